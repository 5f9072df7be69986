"""A research team of agents: a planner, researchers and a writer, coordinated by Baton.

The planner breaks the question into sub-questions; its accepted plan expands the run
(a recorded PlanChanged) with one research task per sub-question and a writing task
that waits for them all. Each researcher answers its sub-question with claims, each
claim with its sources, and names the figures it rests on (a date, a number, a name);
an answer whose claims cite nothing is rejected and asked again, its prompt now saying
why. The writer sees only the question and the accepted answers (its allowlisted
inputs), and writes the report. When all of that is done, the policy's check reads the
answers together: an answer that gives a figure another answer gives differently is
sent back, told which answer disagrees, and the report is written again from the
corrected answers. Every prompt, answer, token and dollar is in the run's log, with the
reason each was asked for.

Try it on a fresh machine, with no key and no network (pydantic-ai's TestModel answers
every agent with made-up data of the right shape):

    baton run examples/research_team.py --model test

With a provider's package and key (pip install 'pydantic-ai-slim[openai]', and
OPENAI_API_KEY set), `baton run examples/research_team.py` is a real run; --model
anthropic:claude-sonnet-4-0 (or any pydantic-ai model name) answers with another.
Ask another question with RESEARCH_QUESTION="...".
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai import Agent

import baton
from baton import DefaultPolicy, Task, Verdict, from_task
from baton.events.policy import PlanView

MODEL = "openai:gpt-4o"  # each agent's own; `--model` answers for all of them
QUESTION = os.environ.get(
    "RESEARCH_QUESTION", "How does event sourcing help debug a multi-agent system?")


class ResearchPlan(BaseModel):
    """The planner's answer: the sub-questions that together answer the question."""

    sub_questions: list[str] = Field(min_length=1, max_length=4)


class Claim(BaseModel):
    text: str
    sources: list[str] = Field(min_length=1, description="where the claim comes from")


class Answer(BaseModel):
    """A researcher's answer to one sub-question."""

    sub_question: str
    claims: list[Claim] = Field(min_length=1)
    figures: dict[str, str] = Field(
        default_factory=dict, description="the facts the answer rests on, by name: a date, "
        "a number or a name, e.g. {'year Ray was first released': '2017'}")


class Report(BaseModel):
    """The writer's synthesis of the accepted answers."""

    title: str
    summary: str
    key_points: list[str]


planner = baton.agent(
    Agent(MODEL, name="planner", defer_model_check=True,
          instructions="You plan research. Split the question into at most four "
                       "sub-questions that can be answered independently."),
    capabilities=["plan"])

researcher = baton.agent(
    Agent(MODEL, name="researcher", defer_model_check=True,
          instructions="You answer one research sub-question with short factual claims. "
                       "Every claim names its sources (a URL, a paper or a book). Name "
                       "the key figures your answer rests on."),
    capabilities=["research"], replicas=2, concurrency=4)

writer = baton.agent(
    Agent(MODEL, name="writer", defer_model_check=True,
          instructions="You write a short, faithful report from the answers you are "
                       "given. Say nothing the answers do not support."),
    capabilities=["write"])


class ResearchTeam(DefaultPolicy):
    """The default rules, plus: the plan expands the run into research and writing, an
    answer must back every claim with a source, answers must agree on every figure they
    share, and the output is the report with the sources it rests on."""

    def expand(self, task: Task, output: Any) -> list[Task]:
        if task.capability != "plan":
            return []
        plan = ResearchPlan.model_validate(output)
        research = [Task(id=f"research-{i}", capability="research", output_schema=Answer,
                         instructions="Answer this sub-question of the question.",
                         inputs={"question": task.inputs["question"], "sub_question": q})
                    for i, q in enumerate(plan.sub_questions, start=1)]
        answers = {t.id: from_task(t.id) for t in research}
        write = Task(id="write", capability="write", output_schema=Report,
                     instructions="Write the report that answers the question.",
                     inputs={"question": task.inputs["question"], **answers})
        return [*research, write]

    def validate(self, task: Task, output: Any) -> Verdict:
        verdict = super().validate(task, output)
        if not verdict.accepted or task.capability != "research":
            return verdict
        answer = Answer.model_validate(output)
        unsourced = [c.text for c in answer.claims if not any(s.strip() for s in c.sources)]
        return Verdict.of([f"the claim {text!r} cites no source; name one for every claim"
                           for text in unsourced])

    def check(self, plan: PlanView) -> Verdict:
        """Answers that contradict each other: the later one to give a figure differently
        is sent back, told what the earlier one says (its retry is charged to its
        attempts, so a researcher that keeps disagreeing ends with a person)."""
        verdict = super().check(plan)
        if not verdict.accepted:
            return verdict
        first: dict[str, tuple[str, str]] = {}  # figure -> (task, value) that gave it first
        contradicted: dict[str, list[str]] = {}
        for tid, out in plan.outputs.items():
            if not tid.startswith("research-"):
                continue
            for name, value in Answer.model_validate(out).figures.items():
                said_by, said = first.setdefault(" ".join(name.lower().split()), (tid, value))
                if said_by != tid and said.strip().lower() != value.strip().lower():
                    contradicted.setdefault(tid, []).append(
                        f"you give {name!r} as {value!r}, but {said_by} gives {said!r}")
        return Verdict.send_back({
            tid: "; ".join(found) + ": check your sources and give what they support"
            for tid, found in contradicted.items()})

    def synthesize(self, plan: PlanView) -> Any:
        report = plan.outputs.get("write")
        sources = sorted({source for tid, out in plan.outputs.items()
                          if tid.startswith("research-")
                          for claim in Answer.model_validate(out).claims
                          for source in claim.sources})
        return {"question": QUESTION, "report": report, "sources": sources}


spec = baton.Spec(
    goal=f"Research: {QUESTION}",
    tasks=[Task(id="plan", capability="plan", output_schema=ResearchPlan,
                instructions="Plan the research that answers the question.",
                inputs={"question": QUESTION})],
    handlers=[planner, researcher, writer],
    policy=ResearchTeam(),
)
