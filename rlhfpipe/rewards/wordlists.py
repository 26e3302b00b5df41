"""Our own English word lists for the cohesion indices (written from general knowledge, not TAACO's).

All entries are lower-case and spelt the way ``cohesion.tokenize`` emits them: contractions are one
token ("don't", "i'm") and multi-word connectives are space-separated phrases.
"""

from __future__ import annotations

PRONOUNS: frozenset[str] = frozenset(
    """
    i me my mine myself you your yours yourself yourselves he him his himself she her hers herself
    it its itself we us our ours ourselves they them their theirs themselves
    i'm i've i'll i'd you're you've you'll you'd he's he'll he'd she's she'll she'd it's it'll it'd
    we're we've we'll we'd they're they've they'll they'd let's
    """.split()
)
"""Personal, possessive and reflexive pronouns, plus contractions that contain one."""

# Words that carry grammar rather than topic; anything not listed (or a connective) counts as content.
_GRAMMAR_WORDS: frozenset[str] = frozenset(
    """
    a an the this that these those each every either neither some any no all both few many much more
    most less least several such other another own same enough one
    someone somebody something anyone anybody anything everyone everybody everything nobody nothing
    none who whom whose which what whatever whoever whichever where when why how wherever whenever
    about above across after against along among around at before behind below beneath beside
    besides between beyond by despite down during except for from in inside into like near of off on
    onto out outside over past since through throughout till to toward towards under underneath
    until up upon with within without via per than
    and but or nor so yet because although though while whereas if unless whether as
    be am is are was were been being have has had having do does did doing
    will would shall should can could may might must ought
    that's that'll there's here's what's who's where's how's isn't aren't wasn't weren't don't
    doesn't didn't haven't hasn't hadn't won't wouldn't can't cannot couldn't shouldn't mustn't
    mightn't needn't shan't ain't
    not yes yeah yep nope oh ah um uh hmm ok okay well very really quite rather just only even also
    too then there here now still already again ever never always often sometimes usually perhaps
    maybe however therefore thus hence otherwise instead anyway anyways indeed else almost
    """.split()
)

CONNECTIVES: dict[str, tuple[str, ...]] = {
    # The first connectives learners use; deliberately overlaps the specific lists below.
    "basic": ("and", "but", "or", "so", "because", "then", "also"),
    "causal": (
        "because", "because of", "since", "so that", "therefore", "thus", "hence", "consequently",
        "as a result", "as a consequence", "due to", "owing to", "thanks to", "for this reason",
        "that is why", "that's why", "which is why", "this is why", "in order to", "so as to",
        "accordingly",
    ),
    "additive": (
        "and", "also", "additionally", "in addition", "moreover", "furthermore", "besides",
        "as well", "as well as", "plus", "what is more", "what's more", "on top of that", "not only",
        "likewise", "similarly", "in the same way", "along with", "not to mention",
    ),
    "adversative": (
        "but", "however", "although", "though", "even though", "even if", "yet", "whereas",
        "nevertheless", "nonetheless", "on the other hand", "in contrast", "by contrast",
        "on the contrary", "instead", "instead of", "despite", "in spite of", "rather than",
        "even so", "otherwise", "conversely", "alternatively", "then again", "all the same",
        "regardless",
    ),
    "temporal": (
        "then", "when", "whenever", "before", "after", "afterwards", "afterward", "meanwhile",
        "in the meantime", "while", "until", "till", "as soon as", "at first", "first of all",
        "firstly", "secondly", "finally", "eventually", "at last", "later", "later on", "soon",
        "next", "at the same time", "so far", "by the time", "previously", "earlier",
        "from now on", "since then", "in the end",
    ),
}
"""Connective phrases per category. A phrase may sit in several categories (\"but\" is basic and
adversative); a matched occurrence is credited to every category listing it."""

# Single-word connectives are discourse glue, not topic, so they never count as content words.
FUNCTION_WORDS: frozenset[str] = (
    _GRAMMAR_WORDS
    | PRONOUNS
    | frozenset(p for phrases in CONNECTIVES.values() for p in phrases if " " not in p)
)
"""Function words: grammar words, pronouns and single-word connectives."""
