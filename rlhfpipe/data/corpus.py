"""The embedded default corpus: emotional-support dialogues in the MultiMood/MESC JSONL format.

Dialogues are composed from problem types x situation templates x slot values (hundreds of
distinct situations), a client emotion from MESC's seven and, per therapist turn, a strategy from
MESC's ten that fits the stage of the conversation and the client's emotion. A good response
names the client's situation and emotion and realises its strategy, so a model must copy details
from the prompt and choose what to say; no length or marker token gives it away.

One JSONL line per therapist turn, as MultiMood ships MESC:
``Dialogue_ID, Utterance, Emotion, Strategy, get_emotion_user_most_recent, utt_user_most_recent,
history_chat, situation, problem_type``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

EMOTIONS = ("anger", "sadness", "disgust", "depression", "neutral", "joy", "fear")
STRATEGIES = (
    "Open question", "Approval", "Self-disclosure", "Restatement", "Interpretation", "Advisement",
    "Communication Skills", "Structuring the therapy", "Guiding the pace and depth of the conversation",
    "Others",
)


@dataclass(frozen=True)
class Problem:
    name: str
    """problem_type label"""
    events: tuple[tuple[str, str], ...]
    """(client says, therapist paraphrases as a gerund phrase); both contain {x}"""
    slots: tuple[str, ...]
    """values of {x}"""
    details: tuple[str, ...]
    """second client message, may contain {x}"""
    meaning: str
    """what the event often means to people (interpretation)"""
    advice: tuple[str, ...]
    """concrete suggestions (advisement)"""
    person: str
    """whom the client could talk to (communication skills)"""


PROBLEMS = (
    Problem(
        "job crisis",
        (("I was laid off from my job at the {x}", "losing your job at the {x}"),
         ("my contract at the {x} was not renewed", "having your contract at the {x} end"),
         ("I failed my probation at the {x}", "failing your probation at the {x}")),
        ("bakery", "bank", "warehouse", "hospital", "school", "factory", "hotel", "library",
         "garage", "call center", "supermarket", "newspaper"),
        ("I worked at the {x} for years and now I do not know what to do",
         "Every morning I still wake up at the time I used to leave for the {x}",
         "I have not told my family about the {x} yet"),
        "the loss of security and of the person you were at work",
        ("write down three skills you used at the {x}", "update your resume one section at a time",
         "ask a former colleague from the {x} for a reference"),
        "your former manager",
    ),
    Problem(
        "breakup with partner",
        (("my partner of {x} left me", "the end of a relationship of {x}"),
         ("I found out my partner of {x} was cheating", "discovering that your partner of {x} cheated"),
         ("we decided to separate after {x} together", "separating after {x} together")),
        ("two years", "five years", "six months", "ten years", "three years", "eight months",
         "four years", "one year", "seven years", "nine months"),
        ("We shared a flat for {x} and now it feels empty",
         "I keep reading our old messages from those {x}",
         "All our friends from those {x} are taking sides"),
        "grief for the future you had imagined together",
        ("spend an evening with a friend who knew you before those {x}",
         "put the old messages away in a folder for now", "write a letter you never send"),
        "a close friend",
    ),
    Problem(
        "academic pressure",
        (("I failed my {x} exam", "failing your {x} exam"),
         ("I have my {x} finals next week and cannot focus", "preparing for your {x} finals without focus"),
         ("my {x} professor said my thesis is weak", "hearing your {x} professor call your thesis weak")),
        ("chemistry", "history", "math", "biology", "physics", "law", "economics", "nursing",
         "music", "statistics", "philosophy", "engineering"),
        ("My parents expect top marks in {x} from me",
         "I studied {x} every night and it still was not enough",
         "Everyone else in my {x} class seems to manage"),
        "fear that one result decides your worth",
        ("plan short study blocks for {x} with breaks", "ask your {x} tutor for feedback on one topic",
         "study {x} with a classmate twice a week"),
        "your tutor",
    ),
    Problem(
        "conflict with family",
        (("my {x} and I had a huge fight", "the fight with your {x}"),
         ("my {x} criticises everything I do", "being criticised by your {x}"),
         ("my {x} stopped speaking to me", "your {x} not speaking to you")),
        ("mother", "father", "sister", "brother", "grandmother", "uncle", "aunt", "stepfather",
         "son", "daughter"),
        ("It started over something small but my {x} would not let it go",
         "My {x} brings up every mistake I ever made",
         "The rest of the family expects me to apologise to my {x}"),
        "a wish to be understood by someone whose opinion matters to you",
        ("choose a calm moment to talk with your {x}", "write down what you want your {x} to understand",
         "take a short break from the topic with your {x}"),
        "your {x}",
    ),
    Problem(
        "loneliness",
        (("I moved to {x} and I do not know anyone", "moving to {x} without knowing anyone"),
         ("since I moved to {x} nobody calls me", "nobody calling you since the move to {x}"),
         ("I spend every weekend alone in {x}", "spending every weekend alone in {x}")),
        ("Berlin", "Chicago", "Lisbon", "Toronto", "Madrid", "Seattle", "Dublin", "Oslo", "Denver",
         "Melbourne", "Boston", "Vienna"),
        ("In {x} I eat dinner alone most nights",
         "My old friends are far away from {x}",
         "I walk around {x} and everyone seems to have someone"),
        "a need for belonging after a big change",
        ("join one club or class in {x}", "call an old friend once a week",
         "visit the same cafe in {x} until faces become familiar"),
        "a neighbour",
    ),
    Problem(
        "grief",
        (("my {x} passed away last month", "the death of your {x}"),
         ("I lost my {x} to cancer", "losing your {x} to cancer"),
         ("my {x} died suddenly", "the sudden death of your {x}")),
        ("grandfather", "grandmother", "best friend", "dog", "cat", "uncle", "father", "mother",
         "brother", "neighbour"),
        ("I keep thinking I should have visited my {x} more",
         "The house feels so quiet without my {x}",
         "People tell me to move on but I miss my {x} every day"),
        "love that has nowhere to go right now",
        ("keep a small ritual to remember your {x}", "look through photos of your {x} with someone",
         "write down a favourite memory of your {x}"),
        "someone who also knew your {x}",
    ),
    Problem(
        "health worry",
        (("my doctor found something on my {x} scan", "waiting after the {x} scan"),
         ("I have had {x} pain for weeks", "weeks of {x} pain"),
         ("I am waiting for results about my {x}", "waiting for results about your {x}")),
        ("heart", "lung", "back", "knee", "stomach", "head", "kidney", "shoulder", "liver", "hip"),
        ("I search my {x} symptoms online every night",
         "I cannot sleep because I keep thinking about my {x}",
         "I have not told anyone about my {x}"),
        "the hard part of not knowing",
        ("write your questions about the {x} down for the doctor", "limit searching about your {x} to once a day",
         "bring a friend to the next {x} appointment"),
        "your doctor",
    ),
    Problem(
        "financial stress",
        (("I cannot pay my {x} this month", "not being able to pay your {x}"),
         ("my {x} went up again", "your {x} going up again"),
         ("I owe money on my {x}", "owing money on your {x}")),
        ("rent", "car loan", "credit card", "student loan", "phone bill", "electricity bill",
         "mortgage", "medical bill", "tax bill", "water bill"),
        ("I check my bank account ten times a day because of the {x}",
         "I am ashamed to tell anyone about the {x}",
         "The letters about my {x} keep coming"),
        "the weight of feeling that you have lost control",
        ("make a simple list of what you owe on the {x}", "call the company about a plan for the {x}",
         "ask a free advice service about the {x}"),
        "an advisor",
    ),
    Problem(
        "friendship conflict",
        (("my friend {x} ignored my birthday", "{x} ignoring your birthday"),
         ("my friend {x} told my secret to others", "{x} telling your secret to others"),
         ("my friend {x} cancels every plan we make", "{x} cancelling every plan you make")),
        ("Anna", "Marco", "Priya", "Tom", "Lena", "Sam", "Yusuf", "Chloe", "Diego", "Mei", "Omar",
         "Julia"),
        ("{x} and I have been friends since school",
         "I saw photos of {x} out with other people",
         "When I asked {x} about it I got no real answer"),
        "hurt that someone close did not treat you with care",
        ("tell {x} calmly how it affected you", "give yourself a few days before talking to {x}",
         "spend time with friends who show up for you"),
        "{x}",
    ),
    Problem(
        "work stress",
        (("my {x} keeps giving me more work", "your {x} piling on more work"),
         ("my {x} shouted at me in a meeting", "being shouted at by your {x}"),
         ("my {x} takes credit for my work", "your {x} taking credit for your work")),
        ("manager", "team lead", "boss", "supervisor", "director", "coworker", "client", "editor",
         "head chef", "shift leader"),
        ("I stay late every day and my {x} still is not happy",
         "I dread every email from my {x}",
         "Nobody else on the team says anything to my {x}"),
        "exhaustion from giving more than you get back",
        ("list your tasks and ask your {x} to set priorities", "take your full lunch break away from your desk",
         "note the dates when your {x} crossed a line"),
        "your {x}",
    ),
)

EMOTION_WORDS = {
    "anger": ("angry", ("I am so angry about it", "it makes me furious", "I am angry all the time")),
    "sadness": ("sad", ("I feel so sad", "I have been really down", "I cry a lot")),
    "disgust": ("disgusted", ("I feel disgusted", "it makes me sick to think about it", "I feel disgusted by all of it")),
    "depression": ("hopeless", ("I feel hopeless", "nothing seems worth it anymore", "I feel empty and hopeless")),
    "neutral": ("unsure", ("I am not sure how I feel", "I do not really know what I feel", "I feel kind of numb")),
    "joy": ("relieved", ("it actually feels good to say it", "I feel a little lighter now", "I am glad I said it")),
    "fear": ("scared", ("I am scared", "I am afraid of what comes next", "I feel anxious all day")),
}
OPENERS = ("", "Hi.", "Hello.", "Honestly,", "I need to talk.", "Sorry to bother you.")
CLOSINGS = (
    "Thank you, I think I can try that.", "That makes sense, I will think about it.",
    "Okay, I feel a bit better talking about it.", "Maybe you are right.",
)

# The fitting strategy is a function of the conversation's stage, the client's emotion and the
# problem (a MESC-style progression: explore first, then comfort or act, then close). Because it is
# determined by the prompt, a response with another strategy is a worse response, not an equally
# good alternative, and a reward model can learn the difference.
FIRST_TURN = {
    "anger": "Restatement", "sadness": "Open question", "disgust": "Restatement", "depression": "Interpretation",
    "neutral": "Open question", "fear": "Interpretation",
}
MIDDLE_TURN = {
    "anger": "Communication Skills", "sadness": "Self-disclosure", "disgust": "Approval",
    "depression": "Guiding the pace and depth of the conversation", "neutral": "Advisement", "fear": "Approval",
}
LAST_TURN = ("Structuring the therapy", "Approval", "Others", "Advisement")


def fitting_strategy(turn: int, emotion: str, problem_index: int) -> str:
    if turn == 0:
        return FIRST_TURN[emotion]
    if turn == 1:
        return MIDDLE_TURN[emotion]
    return LAST_TURN[problem_index % len(LAST_TURN)]


def _response(strategy: str, p: Problem, x: str, event_ing: str, emo_adj: str, rng: random.Random) -> str:
    """A therapist response realising ``strategy`` that names the situation and the emotion."""
    fill = lambda s: s.replace("{x}", x)  # noqa: E731
    advice = fill(rng.choice(p.advice))
    person = fill(p.person)
    options = {
        "Open question": (
            f"What has been the hardest part of {event_ing} for you?",
            f"How have you been coping since {event_ing}?",
            f"Can you tell me more about {event_ing} and what it means to you?",
        ),
        "Restatement": (
            f"So you are dealing with {event_ing}, and it leaves you feeling {emo_adj}.",
            f"It sounds like {event_ing} has left you feeling {emo_adj}.",
        ),
        "Interpretation": (
            f"I wonder if feeling {emo_adj} after {event_ing} is also about {p.meaning}.",
            f"Perhaps what makes {event_ing} so heavy is {p.meaning}.",
        ),
        "Approval": (
            f"It is completely understandable to feel {emo_adj} after {event_ing}. You are doing well by talking about it.",
            f"Feeling {emo_adj} makes sense after {event_ing}, and reaching out shows real strength.",
        ),
        "Self-disclosure": (
            f"I went through something like {event_ing} once, and I felt {emo_adj} too. It did get easier with time.",
            f"When I faced a {p.name} myself, I also felt {emo_adj}, so you are not alone in this.",
        ),
        "Advisement": (
            f"One small step could be to {advice}. It may help with {event_ing}.",
            f"Maybe you could {advice} this week, and see how it feels.",
        ),
        "Communication Skills": (
            f"When you talk with {person}, you could say how {event_ing} made you feel, starting with I feel {emo_adj}.",
            f"It might help to tell {person} calmly that you feel {emo_adj}, and to listen to the answer too.",
        ),
        "Structuring the therapy": (
            f"Let us spend our time today on {event_ing}, and then agree on one small step.",
            f"Today we can focus on {event_ing}, and next time we can look at what changed.",
        ),
        "Guiding the pace and depth of the conversation": (
            f"We can take this slowly. There is no rush to sort out {event_ing} today.",
            f"Let us pause on that feeling of being {emo_adj} for a moment before we go further.",
        ),
        "Others": (
            f"Thank you for trusting me with {event_ing}. I am glad you reached out.",
            f"I am here with you, and we will keep working on {event_ing} together.",
        ),
    }[strategy]
    return rng.choice(options)


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


def generate_dialogue(index: int, rng: random.Random) -> list[dict]:
    """One dialogue as MultiMood rows, one row per therapist turn."""
    problem_index = rng.randrange(len(PROBLEMS))
    p = PROBLEMS[problem_index]
    client_event, event_ing = rng.choice(p.events)
    x = rng.choice(p.slots)
    client_event, event_ing = client_event.replace("{x}", x), event_ing.replace("{x}", x)
    situation = _clean(client_event) + "."
    emotion = rng.choice([e for e in EMOTIONS if e != "joy"])
    emo_adj, emo_phrases = EMOTION_WORDS[emotion]
    n_exchanges = rng.choice((2, 2, 3))
    dialogue_id = f"gen-{index:05d}"

    client_msgs = [
        (_clean(f"{rng.choice(OPENERS)} {client_event}, and {rng.choice(emo_phrases)}."), emotion),
        (_clean(f"{rng.choice(p.details).replace('{x}', x)}. {rng.choice(emo_phrases).capitalize()}."), emotion),
        (rng.choice(CLOSINGS), "joy"),
    ][:n_exchanges]
    history: list[dict] = []
    rows = []
    for turn, (user_text, user_emotion) in enumerate(client_msgs):
        strategy = fitting_strategy(turn, emotion, problem_index)
        adj = "relieved" if user_emotion == "joy" else emo_adj
        response = _response(strategy, p, x, event_ing, adj, rng)
        rows.append({
            "Dialogue_ID": dialogue_id,
            "Utterance": [response],
            "Emotion": "joy" if user_emotion == "joy" else "neutral",
            "Strategy": strategy,
            "get_emotion_user_most_recent": user_emotion,
            "utt_user_most_recent": [user_text],
            "history_chat": list(history),
            "situation": situation,
            "problem_type": p.name,
        })
        history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": response}]
    return rows


def generate_corpus(n_dialogues: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n_dialogues):
        rows += generate_dialogue(i, rng)
    return rows


def distinct_situations() -> int:
    return sum(len(p.events) * len(p.slots) for p in PROBLEMS)
