"""The pyfunc model as code (MLflow's "models from code"), the file `log_pyfunc` logs.

Loading the model runs this file, with the logged `stages` and `lightning_modules` on the
path, instead of unpickling a Python object.
"""

from mlflow.models import set_model

from stages.pyfunc_model import ClassifierModel

set_model(ClassifierModel())
