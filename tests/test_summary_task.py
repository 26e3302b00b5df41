"""The summary task: its prompts and references, and the summary and faithful rewards on hand-made summaries.

Expected scores are counted by hand from the content words (function words and "client" excluded, one suffix
stripped), written next to each case.
"""

import json

import pytest
import torch

from conftest import REPO, params_config, stage, tiny_params, write_params
from rlhfpipe.config import ParamError, RewardTerm
from rlhfpipe.data.schema import Dialogue, PreferencePair, Records, Turn
from rlhfpipe.data.summary import prepare_summary, read_summary_csv, summary_example, within_budget
from rlhfpipe.data.summary_prompt import dialogue_of, summary_prompt, summary_references
from rlhfpipe.errors import PipelineError
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.summary import coverage_f1, faithfulness

JOB = ("Client: I was laid off from my job at the bakery, and I feel lost.\n"
       "Therapist: It sounds like losing your job at the bakery has left you feeling lost.\n"
       "Client: I have not told my family yet.")
JOB_REFERENCE = "I was laid off from my job at the bakery."
PARTNER = "Client: My partner of two years left me.\nTherapist: The end of a relationship of two years is hard."
PARTNER_REFERENCE = "My partner of two years left me."

# (dialogue, faithful summary, its hand score, unfaithful summary, its hand score)
FAITHFUL_CASES = [
    # laid bakery feel lost: all said; hospital is invented -> 3 of 4
    (JOB, "The client was laid off from the bakery and feels lost.", 1.0,
     "The client was laid off from the hospital and feels lost.", 0.75),
    # the dialogue has "not told my family": told and family negated in both -> 2/2; asserted -> 0/2
    (JOB, "The client has not told the family.", 1.0, "The client has told the family.", 0.0),
    # partner two year left; five is invented -> 3 of 4
    (PARTNER, "Partner of two years left.", 1.0, "Partner of five years left.", 0.75),
    # job lost; a wrong reason (fired for stealing) adds fir, steal -> 2 of 4
    (JOB, "Lost a job.", 1.0, "Fired for stealing, lost a job.", 0.5),
]


@pytest.mark.parametrize("dialogue, good, good_score, bad, bad_score", FAITHFUL_CASES)
def test_faithful_ranks_the_faithful_summary_above_the_invented_one(dialogue, good, good_score, bad, bad_score):
    assert faithfulness(dialogue, good) == pytest.approx(good_score)
    assert faithfulness(dialogue, bad) == pytest.approx(bad_score)
    assert faithfulness(dialogue, good) > faithfulness(dialogue, bad)


def test_faithful_on_empty_and_copied_dialogue():
    assert faithfulness(JOB, "") == 0.0
    assert faithfulness(JOB, "The client, they.") == 0.0  # no content word: nothing to be faithful about
    assert faithfulness(JOB, JOB) == 1.0  # copying is faithful: summary and brevity pull against it


def test_summary_ranks_the_reference_above_a_copy_and_an_empty_answer():
    assert coverage_f1(JOB_REFERENCE, JOB_REFERENCE) == 1.0
    # the copy holds 14 content words (laid job bakery feel lost / sound los job bakery left feel lost / told
    # family), 3 of them the reference's 3: P = 3/14, R = 1, F1 = 6/17
    assert coverage_f1(JOB_REFERENCE, JOB) == pytest.approx(6 / 17)
    assert coverage_f1(JOB_REFERENCE, "") == 0.0
    # lost job: 1 of 2 in the reference, 1 of its 3 covered: F1 = 2 * 1/2 * 1/3 / (1/2 + 1/3) = 0.4
    assert coverage_f1(JOB_REFERENCE, "Lost a job.") == pytest.approx(0.4)
    assert coverage_f1(PARTNER_REFERENCE, "Partner of two years left.") == 1.0  # partner two year left, all four


def registry_for(*dialogues_and_references):
    rows = [{"prompt": summary_prompt(d), "reference": r} for d, r in dialogues_and_references]
    return RewardRegistry(references=summary_references(rows)), [r["prompt"] for r in rows]


def test_registry_scores_both_rewards_from_the_prompt_and_its_reference():
    registry, prompts = registry_for((JOB, JOB_REFERENCE), (PARTNER, PARTNER_REFERENCE))
    # MOODPO's weight instruction is a system message; the rewards key on the user's message only
    weighted = [prompts[0][:-1] + [{"role": "system", "content": "weights: summary 0.5 faithful 0.5"}] + prompts[0][-1:],
                prompts[1]]
    responses = [JOB_REFERENCE, "Partner of five years left."]
    assert registry.score("summary", weighted, responses).tolist() == pytest.approx([1.0, 0.75])  # P 3/4, R 3/4
    assert registry.score("faithful", weighted, responses).tolist() == pytest.approx([1.0, 0.75])
    total, parts = registry.combine([RewardTerm("summary", 1.0), RewardTerm("faithful", 2.0)], weighted, responses)
    assert total.tolist() == pytest.approx([3.0, 2.25])
    assert set(parts) == {"summary", "faithful"} and parts["summary"].dtype == torch.float32


def test_rewards_refuse_prompts_they_cannot_score():
    registry, prompts = registry_for((JOB, JOB_REFERENCE))
    dialogue_prompt = [{"role": "user", "content": "I was laid off."}]
    with pytest.raises(PipelineError, match="not a summary prompt"):
        registry.score("faithful", [dialogue_prompt], ["x"])
    with pytest.raises(PipelineError, match="not a summary prompt"):
        registry.score("summary", [dialogue_prompt], ["x"])
    with pytest.raises(PipelineError, match="no reference summary"):
        registry.score("summary", [summary_prompt(PARTNER)], ["x"])
    with pytest.raises(PipelineError, match="needs its model, weights or references"):
        RewardRegistry().score("summary", prompts, ["x"])


def test_within_budget_keeps_whole_turns_from_the_start():
    text = "Client: one two three\nTherapist: four five\nClient: six"
    # line words: 4, 3, 2
    assert within_budget(text, 7) == "Client: one two three\nTherapist: four five"
    assert within_budget(text, 8) == "Client: one two three\nTherapist: four five"
    assert within_budget(text, 9) == text
    assert within_budget(text, 2) == "Client: one"


def test_summary_example_shows_the_dialogue_and_targets_the_situation():
    d = Dialogue("d1", [Turn("system", "Be kind."), Turn("user", "I  was laid off."), Turn("assistant", "That is hard.")],
                 situation=" Laid   off. ")
    ex = summary_example(d, params_config("data", task="summary"))
    assert ex["prompt"] == [{"role": "user", "content":
                             "Summarise the client's situation.\n\nClient: I was laid off.\nTherapist: That is hard."}]
    assert ex["reference"] == "Laid off." and ex["completion"] == [{"role": "assistant", "content": "Laid off."}]
    assert dialogue_of(ex["prompt"]) == "Client: I was laid off.\nTherapist: That is hard."
    assert summary_example(Dialogue("d2", d.turns), params_config("data", task="summary")) is None


def test_prepare_summary_counts_what_it_drops_and_refuses_a_source_without_situations():
    cfg = params_config("data", task="summary")
    turns = [Turn("user", "I was laid off."), Turn("assistant", "That is hard.")]
    records = Records(dialogues=[Dialogue("a", turns, situation="Laid off."), Dialogue("b", turns)],
                      pairs=[PreferencePair("p", [{"role": "user", "content": "hi"}], "yes", "no")])
    files, metrics = prepare_summary(records, cfg)
    assert sum(metrics["counts"][f"sft_{s}"] for s in ("train", "val", "test")) == 1
    assert sum(metrics["counts"][f"pairs_{s}"] for s in ("train", "val", "test")) == 0
    assert metrics["dropped"] == {"no_situation": 1, "pair_not_a_summary": 1}
    with pytest.raises(PipelineError, match=r"data.task=summary needs dialogues with a situation or summary field, "
                                            r"and data.source=multimood gave none \(1 dialogues\)"):
        prepare_summary(Records(dialogues=[Dialogue("b", turns)]), cfg)


def test_summary_csv_reads_dialogue_and_reference_columns():
    fixture = REPO / "tests/fixtures/formats/summaries.csv"
    cfg = params_config("data", source="prompt_csv", task="summary", prompt_column="dialogue")
    files, metrics = prepare_summary(read_summary_csv(fixture, cfg), cfg)
    rows = [r for s in ("train", "val", "test") for r in files[f"prompts_{s}"]]
    assert sorted(r["reference"] for r in rows) == [JOB_REFERENCE, PARTNER_REFERENCE]
    assert sorted(dialogue_of(r["prompt"]) for r in rows) == [JOB, PARTNER]
    assert metrics["dropped"] == {"no_situation": 1}  # row 3 has no reference
    with pytest.raises(PipelineError, match=r"summaries.csv:2: missing column 'summary' \(data.reference_column\)"):
        read_summary_csv(fixture, params_config("data", source="prompt_csv", task="summary", prompt_column="dialogue",
                                             reference_column="summary"))


def test_task_is_validated():
    with pytest.raises(ParamError, match=r"task='translate': must be one of dialogue, summary"):
        params_config("data", task="translate").validate()
    with pytest.raises(ParamError, match="summary_max_words"):
        params_config("data", summary_max_words=5).validate()


@pytest.fixture
def project(tmp_path):
    return tmp_path


def run_prepare(project, **data):
    params = tiny_params()
    params["data"].update(data)
    write_params(project, params)
    return stage("prepare", "data/prepared", "metrics/data.json", cwd=project)


def test_prepare_stage_builds_the_summary_task_from_a_source_with_situations(project):
    proc = run_prepare(project, source="multimood", path=str(REPO / "tests/fixtures/formats/multimood.jsonl"),
                       task="summary")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for s in ("train", "val", "test")
            for line in (project / f"data/prepared/sft_{s}.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == ["Feels low since changing jobs."]
    assert dialogue_of(rows[0]["prompt"]) is not None


def test_prepare_stage_refuses_the_summary_task_on_a_source_without_situations(project):
    proc = run_prepare(project, source="counsel_chat", path=str(REPO / "tests/fixtures/formats/counsel_chat.csv"),
                       task="summary")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "data.task=summary needs dialogues with a situation or summary field, and data.source=counsel_chat" in proc.stderr
    assert not (project / "data/prepared").exists() and not (project / "metrics/data.json").exists()


def test_moodpo_and_grpo_reward_paths_score_the_summary_objectives():
    from rlhfpipe.moodpo.training import objective_scores
    from rlhfpipe.moodpo.weights import weighted_reward, with_instruction
    from rlhfpipe.training.grpo import registry_reward_functions

    registry, prompts = registry_for((JOB, JOB_REFERENCE), (PARTNER, PARTNER_REFERENCE))
    names = ["summary", "faithful", "brevity"]
    weights = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]
    shown = [with_instruction(p, names, w) for p, w in zip(prompts, weights)]
    texts = [JOB_REFERENCE, "Partner of five years left."]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    # row 1: summary 1, faithful 1, brevity 1 - 10/40 (the reference has 10 words) -> 0.6 + 0.3 + 0.1 * 0.75
    # row 2: summary 0.75, faithful 0.75, brevity 1 - 5/40 -> 0.2 * 0.75 + 0.2 * 0.75 + 0.6 * 0.875
    rewards = weighted_reward(objective_scores(registry, names, shown, texts), torch.tensor(weights))
    assert rewards.tolist() == pytest.approx([0.6 + 0.3 + 0.1 * 0.75, 0.15 + 0.15 + 0.6 * 0.875])
    summary_fn, faithful_fn = registry_reward_functions(registry, [RewardTerm("summary", 1.0), RewardTerm("faithful", 1.0)])
    assert summary_fn(prompts, completions) == pytest.approx([1.0, 0.75])
    assert faithful_fn.__name__ == "faithful" and faithful_fn(prompts, completions) == pytest.approx([1.0, 0.75])


def test_summary_preset_is_valid_and_switches_every_stage_to_the_summary_rewards():
    from rlhfpipe.presets import overrides

    args = overrides(REPO / "configs/presets/summary.yaml", REPO / "params.yaml")
    values = dict(a.split("=", 1) for a in args[1::2])
    assert values["data.task"] == '"summary"'
    assert values["ppo.rewards"] == values["grpo.rewards"] == '[{name:"summary",weight:1.0},{name:"faithful",weight:0.5}]'
    assert values["moodpo.objectives"] == ('[{name:"summary",hv_reference:0.0},{name:"faithful",hv_reference:0.0},'
                                           '{name:"brevity",hv_reference:0.0}]')
    assert "summary-task.md" in (REPO / "README.md").read_text()
    assert "configs/presets/summary.yaml) compare moodpo_eval" in (REPO / "docs/summary-task.md").read_text()
