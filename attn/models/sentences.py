"""Sentences written for attn, to measure what a plan does to a model's sentence embeddings.

Eighteen topics, two sentences each that say nearly the same thing in different words, so the
pairwise similarities have a clear structure (each sentence's paraphrase first, its topic's
neighbours next) that a retrieval ranking either keeps or loses. Lengths run from a few words to a
long sentence, so a short window cuts some of them and not others. PASSAGES are longer (about
a hundred tokens), where a window of tens of tokens cuts most of what each token would see.
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

# Paragraphs of 99 to 112 MiniLM tokens, two to a topic, so that drift can be measured where a window
# of tens of tokens cuts most of what each token would see. Same structure: each paragraph's
# retelling is its nearest neighbour.
PASSAGES: tuple[str, ...] = (
    # a village flood
    "The river rose during three days of steady rain, and by Thursday morning the lower street of "
    "the village was under water. Shop owners carried their stock upstairs, farmers moved cattle to "
    "the hill pastures, and the school closed so that the hall could shelter families whose ground "
    "floors had flooded. Volunteers filled sandbags in the church car park until late at night. "
    "When the water finally went down on Sunday, it left a line of mud on every wall, and the "
    "council promised to raise the old embankment before the next winter.",
    "After several days of rain the river burst its banks and flooded the low part of the village. "
    "Families whose houses were wet downstairs slept in the school hall, which had closed for the "
    "week, while shopkeepers rescued their goods and farmers led their animals to higher fields. "
    "People from nearby towns came to help fill sandbags well into the night. Once the flood "
    "retreated at the weekend, everyone could see the brown mark it had left on the walls, and the "
    "local council said the embankment would be made higher before winter came again.",
    # learning to bake bread
    "Baking your first loaf is mostly a matter of patience. Mix flour, water, salt and a little "
    "yeast into a rough dough, then knead it for ten minutes until it feels smooth and springs back "
    "when you press it. Leave it covered in a warm place until it has doubled in size, which can "
    "take one to two hours. Shape it gently, let it rise once more, and bake it in a very hot oven. "
    "The loaf is done when the crust is deep brown and the bottom sounds hollow when you tap it.",
    "A beginner's bread needs time more than skill. Combine flour, salt, water and some yeast, and "
    "work the dough with your hands for about ten minutes, until it is elastic and no longer "
    "sticky. Cover it and let it grow to twice its size somewhere warm; this may take an hour or "
    "two. Form the loaf carefully, give it a second rise, and put it in a hot oven. You can tell it "
    "is ready when the crust has darkened and tapping the base gives a hollow sound.",
    # a software outage
    "On Monday the payment service stopped accepting orders for forty minutes. The cause was a "
    "configuration change that had passed every test but set a connection limit far too low for "
    "real traffic. As customers retried, the queue of waiting requests grew until the servers ran "
    "out of memory and restarted one after another. Engineers rolled the change back, and orders "
    "started to flow again within minutes. The team has since added a load test to the release "
    "process and now requires a second reviewer for any change to production limits.",
    "An outage on Monday left customers unable to pay for about forty minutes. A settings update, "
    "which looked fine in testing, had capped the number of connections well below what live "
    "traffic needed. Retries piled up, memory ran out, and the servers kept crashing and "
    "restarting. Once the engineers reverted the update, payments recovered almost immediately. "
    "Since then, every release must pass a test under realistic load, and changes to production "
    "limits need approval from a second person before they go out.",
    # a mountain hike
    "We left the hut before sunrise to reach the pass while the snow was still firm. The path "
    "climbed through pine forest, then across open meadows where marmots whistled at us from the "
    "rocks. Above the tree line the wind grew cold, and we stopped only briefly to drink and eat "
    "some bread and cheese. By ten o'clock we stood at the top, with glaciers on one side and a "
    "long green valley on the other. The descent took longer than expected because of loose "
    "stones, and we arrived back at the hut tired but very happy.",
    "To cross the pass while the snow was hard, our group set off from the mountain hut in the "
    "dark. First we walked up through the pines, then over grassy slopes where marmots called out "
    "from their rocks. Higher up, a cold wind made us keep our breaks short, just long enough for "
    "water, bread and cheese. We reached the summit at about ten and looked down on ice on one "
    "side and a green valley on the other. Coming down over loose rock was slow, but we got back "
    "to the hut exhausted and delighted.",
    # a city library
    "The new library opened last spring in a former textile factory near the station. Its large "
    "windows and high ceilings make the reading rooms bright even in winter, and the old iron "
    "beams have been left visible. Besides books, it lends tools, musical instruments and board "
    "games, and it runs free classes on computers for older residents. On weekday afternoons the "
    "study tables are full of students, while on Saturdays the ground floor is given over to "
    "children, with story hours, puppet shows and a small theatre corner.",
    "Last spring the town turned an old cloth mill beside the railway station into a public "
    "library. Tall windows keep the rooms full of light all year, and the original iron frame of "
    "the building is still on show. Visitors can borrow not only books but also tools, "
    "instruments and games, and pensioners can join free lessons on using computers. Students "
    "fill the desks after school on weekdays, and on Saturday mornings the ground floor belongs "
    "to young children, who come for stories, puppets and plays.",
    # a football season
    "Nobody expected much from the club at the start of the season. They had lost their best "
    "striker in the summer and had only a few young players from the academy to replace him. Yet "
    "the new coach built a team that defended patiently and attacked quickly, and they won eight "
    "of their first ten matches. Crowds at the small stadium doubled. A long injury list in "
    "February slowed them down, but they still finished third, their best result in twenty years, "
    "and qualified for a European competition for the first time.",
    "At the beginning of the year the club seemed set for a quiet season: its top scorer had left, "
    "and the replacements were teenagers from its own youth system. The new manager, however, "
    "made them hard to beat at the back and fast on the counter, and eight wins came in the first "
    "ten games. Twice as many fans started turning up. Injuries in late winter cost them some "
    "points, but a third place, the best in two decades, earned them a first ever place in a "
    "European tournament.",
    # a heat wave and health
    "During a heat wave, older people and small children are most at risk. Doctors advise drinking "
    "water regularly even when you do not feel thirsty, staying indoors during the hottest hours, "
    "and keeping curtains closed on the sunny side of the house. Light, loose clothing helps the "
    "body cool down, and a cool shower in the evening can make sleep easier. Neighbours should "
    "check on people who live alone. Dizziness, confusion or a very high temperature can be signs "
    "of heat stroke, which needs emergency treatment.",
    "Hot weather is most dangerous for the elderly and for young children. Medical advice is to "
    "keep drinking water without waiting for thirst, to avoid going out in the middle of the day, "
    "and to shade the rooms that face the sun. Wearing loose, pale clothes helps, and a cool shower "
    "before bed makes it easier to sleep. Someone living alone should get a visit or a call from a "
    "neighbour. If a person becomes dizzy, confused or very hot, it may be heat stroke, and they "
    "need urgent medical help.",
    # moving to a new country
    "Moving abroad for work was harder than she had imagined. The job itself went well, but simple "
    "things took weeks: opening a bank account needed an address, and renting a flat needed a bank "
    "account. She understood the language in meetings but struggled at the doctor's and on the "
    "phone. What helped most was a weekly evening class, where she met other newcomers who shared "
    "advice and, later, weekend trips. After a year she felt at home, although she still missed "
    "her family and the food of her childhood.",
    "When she took a job in another country, everyday life turned out to be the difficult part. "
    "Work was fine, yet she spent weeks caught between a bank that wanted proof of address and "
    "landlords who wanted a bank account. She could follow colleagues at work, but phone calls and "
    "medical visits were hard in the new language. An evening course once a week changed things: "
    "she made friends with other recent arrivals, swapped tips and went travelling with them. A "
    "year on she felt settled, though she missed her family and the dishes she grew up with.",
)
