"""The stage graph, read from dvc.yaml through DVC's own API (never a hand-kept copy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dvc.repo import Repo

PER_MODEL = ("train", "evaluate")  # the foreach groups over params' models


@dataclass(frozen=True)
class StageGraph:
    upstream: dict[str, frozenset[str]]  # stage → the stages whose outputs it reads

    @property
    def stages(self) -> list[str]:
        """Every stage, upstream before downstream (ties by name, so the order is stable)."""
        order: list[str] = []
        placed: set[str] = set()
        while len(order) < len(self.upstream):
            ready = sorted(s for s, up in self.upstream.items() if s not in placed and up <= placed)
            order += ready
            placed |= set(ready)
        return order

    def downstream(self, stage: str) -> set[str]:
        found: set[str] = set()
        frontier = {stage}
        while frontier:
            frontier = {s for s, up in self.upstream.items() if up & frontier} - found
            found |= frontier
        return found

    def select(self, targets: list[str] | None, models: list[str] | None) -> StageGraph:
        """The stages named (a stage, or a group such as `train`) and everything upstream of
        them, which DVC skips when unchanged. `models` keeps, of the per-model stages, only
        those of the given models, with the data stages they need and the stages after them
        that read nothing of the models left out: not `register`, which decides over every
        model's evaluation (other models' files may be from another workspace's run)."""
        chosen = set(self.upstream)
        if targets:
            chosen = {s for s in self.upstream if s in targets or s.split("@")[0] in targets}
            unknown = set(targets) - chosen - {s.split("@")[0] for s in chosen}
            if unknown:
                raise ValueError(f"unknown stages {sorted(unknown)}; known: {self.stages}")
        excluded: set[str] = set()
        if models:
            per_model = {s for s in self.upstream if s.split("@")[0] in PER_MODEL}
            unknown = set(models) - {s.split("@")[1] for s in per_model}
            if unknown:
                raise ValueError(f"unknown models {sorted(unknown)}")
            excluded = {s for s in per_model if s.split("@")[1] not in models}
            kept = per_model - excluded
            after = {
                d
                for s in kept
                for d in self.downstream(s)
                if not self._with_upstream({d}, set()) & excluded
            } - per_model
            chosen &= self._with_upstream(kept, excluded) | after
        closure = self._with_upstream(chosen, excluded)
        return StageGraph({s: up & closure for s, up in self.upstream.items() if s in closure})

    def _with_upstream(self, stages: set[str], excluded: set[str]) -> set[str]:
        closure, frontier = set(stages), set(stages)
        while frontier:
            frontier = set().union(*(self.upstream[s] for s in frontier)) - closure - excluded
            closure |= frontier
        return closure


def read_graph(root: Path) -> StageGraph:
    return read_pipeline(root, stale=False)[0]


def read_pipeline(root: Path, stale: bool = True) -> tuple[StageGraph, set[str]]:
    """The stage graph, and (`stale`) the stages whose dependencies, params or outputs differ
    from dvc.lock (`dvc status`), asked of DVC once: a stage that is not stale, and none of
    whose upstream stages runs, needs no `dvc repro` process of its own."""
    repo = Repo(str(root))
    try:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        # `.dvc` files of data added with `dvc add` are stages too, that run nothing: they are
        # neither tasks nor anyone's upstream task (DVC checks their hashes itself).
        stages = [stage for stage in repo.index.stages if stage.cmd]
        upstream = {
            _address(stage): frozenset(_address(dep) for dep in graph.successors(stage) if dep.cmd)
            for stage in stages
        }
        if not stale:
            return StageGraph(upstream), set()
        with repo.lock:
            return StageGraph(upstream), {_address(s) for s in stages if s.status()}
    finally:
        repo.close()


def _address(stage) -> str:  # noqa: ANN001 (a dvc Stage)
    """`name` for the root dvc.yaml, `path/dvc.yaml:name` elsewhere, as `dvc repro` takes it in
    the repository root (DVC's own `addressing` is relative to the working directory)."""
    where = stage.path_in_repo  # the stage's dvc.yaml, relative to the repository root
    return stage.name if where == "dvc.yaml" else f"{where}:{stage.name}"
