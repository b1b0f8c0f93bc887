"""The default voice's held-out sentences, inside the package so `vitsrt eval` needs no checkout.

The same list as ``recipes/default-voice/heldout.txt`` (what ``vitsrt.train.corpus.heldout_sentences(seed=0)``
makes, which needs Debian's flite package); tests/test_cli_hardening.py keeps the two equal. A Python
module rather than a data file, so it ships with the package without any package-data settings.
"""

DEFAULT_VOICE_HELDOUT: tuple[str, ...] = (
    'I must have been changed for Mabel!',
    "Tell me that first, and then, if I like being that person, I'll come up.",
    'I shall be punished for it now, I suppose, by being drowned in my own tears!',
    "I wish I hadn't cried so much!",
    'Before her was another long passage, and the White Rabbit was still in sight, hurrying down it.',
    'Here and there she saw maps and pictures hung upon pegs.',
    'Soon her eye fell on a little glass box that was lying under the table.',
    'Oh, how I wish I could shut up like a telescope!',
    'After a while, finding that nothing more happened, she decided on going into the garden at once; '
    'but, alas for poor Alice!',
    "Why, there's hardly enough of me left to make ONE respectable person!",
    "Now I'm opening out like the largest telescope that ever was.",
    'I shall only look up and say Who am I then?',
    "But if I'm not the same, the next question is, Who in the world am I?",
    'There were doors all round the hall, but they were all locked.',
    'Would YOU like cats if you were me?',
    'Where did Helen paint a long letter?',
    'The captain dropped an empty cup in the small shop in the evening.',
    'There were six pictures in the north of the city.',
    'Please move the wooden bridge on the top floor!',
    'A young doctor sold a bag of apples at the end of the road at midnight.',
    'There were a hundred students inside the museum.',
    'How often did the children move the heavy chair?',
    'Please wash the quiet village under the old tree!',
    'There were two candles near the river.',
    'Why did Victor wash a bowl of soup?',
    'Victor told Maria that a bag of apples was gentle.',
    'Maria dropped a bowl of soup on the top floor every Sunday.',
    'Thomas told Oliver that the morning train was cold.',
    'Please find a map of the coast at the end of the road!',
    'How often did Julia sell the wooden bridge?',
)
