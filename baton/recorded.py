"""The policies a replay decides with: each stretch of a log's own, loaded again from
where the run recorded it (its spec, or a policy reference), and what a replay notes of
them, where one is not the policy that ran or an output schema does not load as it was.
Shared by a serial verify (replay.py) and the pieces of a parallel one (parallel.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from baton.actors.spec import (
    ImportedSchemas,
    load_policy,
    load_spec,
    policy_identity,
    same_policy,
)
from baton.events.errors import BadSpecError
from baton.events.model import schema_identity
from baton.events.policy import Policy
from baton.events.schema import RunForked, RunRequested
from baton.events.state import RunState


@dataclass
class Replaying:
    """The policies a replay decides with (`policy` throughout, else each stretch's
    recorded one), and what it notes of them: where one is not the policy that ran, and
    where an output schema does not load as it was."""

    policy: Policy | None = None
    noted: list[str] = field(default_factory=list)
    origins: list[RunRequested | RunForked] = field(default_factory=list)
    schemas: ImportedSchemas = field(default_factory=ImportedSchemas)

    def policy_for(self, origin: RunRequested | RunForked) -> Policy:
        self.origins.append(origin)
        if self.policy is not None:
            load_schemas_of([origin], self.noted)
        chosen = recorded_policy(origin) if self.policy is None else self.policy
        name, source = policy_identity(chosen)
        if same_policy((origin.policy, origin.policy_digest), (name, source)) is False:
            where = ("the run" if isinstance(origin, RunRequested)
                     else f"the fork from seq {origin.seq}")
            how = "replaying with" if self.policy is not None else "its recorded spec now gives"
            self.noted.append(f"{where} was decided by {origin.policy} (source "
                              f"{origin.policy_digest or 'not recorded'}); {how} {name} "
                              f"(source {source}), so a divergence may come from that "
                              "difference")
        return chosen

    def notes(self) -> tuple[str, ...]:
        return tuple(self.noted + schema_notes(self.origins, self.schemas))


def load_schemas_of(origins: list[RunRequested | RunForked], notes: list[str]) -> None:
    """Load the specs a run recorded, so the output schemas they define import: a spec
    loaded from a file defines them in a module that only loading it makes."""
    for origin in origins:
        if origin.spec:
            try:
                load_spec(origin.spec)
            except BadSpecError as error:
                notes.append(f"the run's spec {origin.spec} did not load, so its output "
                             f"schemas may not resolve: {error}")


def schema_notes(origins: list[RunRequested | RunForked], schemas: ImportedSchemas
                 ) -> list[str]:
    """Where the output schemas a replay used are not the ones the run recorded."""
    notes = []
    requests = [o for o in origins if isinstance(o, RunRequested)]
    for topic, recorded in (requests[0].schemas if requests else {}).items():
        model = schemas.get(topic)
        if model is None:
            why = schemas.missing.get(topic, "not imported")
            notes.append(f"output schema {topic} does not load here ({why}), so no output "
                         "of its tasks could be judged as it was")
        elif schema_identity(model) != recorded:
            notes.append(f"output schema {topic} changed since the run (its JSON Schema "
                         f"hashed {recorded}, now {schema_identity(model)}), so a divergence "
                         "may come from that difference")
    return notes


def recorded_policy(origin: RunRequested | RunForked) -> Policy:
    """The policy that decided a run (or a fork, from its RunForked on), loaded again
    from where it was recorded."""
    ref = origin.policy_ref if isinstance(origin, RunForked) else ""
    return _recorded(origin.run_id, ref, origin.spec, origin.policy)


def policy_at(state: RunState) -> Policy:
    """The policy deciding a run from where `state` stands (its fork's, past a fork)."""
    return _recorded(state.run_id, state.policy_ref, state.spec, state.policy)


def _recorded(run_id: str, ref: str, spec: str, policy: str) -> Policy:
    if ref:
        return load_policy(ref)
    if spec:
        return load_spec(spec).policy
    if policy:
        try:
            return load_policy(policy)
        except BadSpecError as error:
            raise BadSpecError(f"run {run_id!r} records no spec, and its policy "
                               f"{policy} does not load: {error}") from None
    raise BadSpecError(f"run {run_id!r} records neither its spec nor its policy")
