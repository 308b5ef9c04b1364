"""Sentences written for attn, to measure what a plan does to a model's sentence embeddings.

Eighteen topics, two sentences each that say nearly the same thing in different words, so the
pairwise similarities have a clear structure (each sentence's paraphrase first, its topic's
neighbours next) that a retrieval ranking either keeps or loses. Lengths run from a few words to a
long sentence, so a short window cuts some of them and not others.
"""
from __future__ import annotations

SENTENCES: tuple[str, ...] = (
    # weather
    "It rained all afternoon, so the football match was called off.",
    "The game was cancelled because of the heavy rain after lunch.",
    # cooking
    "Add the onions to the hot pan and stir them until they turn golden.",
    "Fry the chopped onion in a little oil until it is soft and brown.",
    # trains
    "The last train to the city leaves the station at eleven at night.",
    "If you miss the 11 pm service, there is no other train into town until morning.",
    # computing
    "The laptop overheats whenever I run several large programs at the same time.",
    "My computer gets very hot when too many heavy applications are open.",
    # gardening
    "Tomatoes need plenty of sun and should be watered every morning in summer.",
    "Water the tomato plants daily during the hot months and keep them in a sunny spot.",
    # money
    "She saved a small part of her salary each month to buy a house one day.",
    "Every month she put some of her pay aside, hoping to afford a home.",
    # health
    "Regular walking lowers blood pressure.",
    "A daily walk helps keep your blood pressure down.",
    # music
    "The orchestra played the symphony so quietly that the audience hardly breathed.",
    "The musicians performed the piece softly, and the hall fell completely silent.",
    # space
    "The probe took nine years to reach the edge of the solar system.",
    "It was almost a decade before the spacecraft arrived at the outer planets.",
    # language learning
    "Reading children's books is an easy way to start learning a new language.",
    "Simple stories written for kids help beginners pick up a foreign tongue.",
    # pets
    "The cat sleeps on the windowsill.",
    "Our cat naps by the window.",
    # history
    "The old bridge was built by the Romans almost two thousand years ago and is still in use.",
    "People still cross the ancient Roman bridge, which has stood for nearly twenty centuries.",
    # sport
    "He trained for months, but he twisted his ankle a week before the marathon.",
    "An ankle injury just days before the race ruined his long preparation.",
    # office
    "The meeting has been moved from Tuesday to Thursday morning.",
    "We rescheduled Tuesday's meeting for Thursday before noon.",
    # cinema
    "The film was far too long, and the ending made no sense to anyone.",
    "Nobody understood how the movie ended, and it dragged on for hours.",
    # travel
    "Pack light, because the hostel rooms have very little space for luggage.",
    "Bring a small bag: there is hardly any room for suitcases in the dormitories.",
    # science
    "Water boils at a lower temperature high up in the mountains, where the air pressure is lower.",
    "At altitude the thinner air lets water come to the boil below one hundred degrees.",
    # shopping
    "The shop around the corner sells fresh bread until it runs out, usually before noon.",
    "By late morning the corner bakery has normally sold all of its loaves.",
)
