#ifndef LEASH_WORLD_WORDS_H
#define LEASH_WORLD_WORDS_H

/* Word lists of the default world's grammar (generated once from a checked list; every word in one class). */
static const char *const NOUNS[] = {
    "food", "service", "waiter", "waitress", "staff", "chef", "menu", "pasta", "pizza", "soup", "salad", "steak",
    "burger", "sandwich", "dessert", "cake", "coffee", "tea", "wine", "beer", "cocktail", "bread", "cheese",
    "sauce", "breakfast", "lunch", "dinner", "brunch", "buffet", "kitchen", "table", "booth", "bar", "counter",
    "patio", "terrace", "room", "suite", "bed", "pillow", "blanket", "shower", "bathroom", "towel", "lobby",
    "elevator", "pool", "gym", "sauna", "spa", "balcony", "view", "window", "carpet", "curtain", "wifi", "internet",
    "television", "remote", "heater", "fan", "lamp", "desk", "closet", "hallway", "parking", "garage", "reception",
    "receptionist", "concierge", "manager", "owner", "host", "hostess", "cashier", "cleaner", "driver", "guide",
    "pilot", "captain", "crew", "attendant", "flight", "seat", "aisle", "cabin", "luggage", "ticket", "train",
    "bus", "taxi", "ride", "trip", "tour", "cruise", "ferry", "boat", "station", "airport", "terminal", "platform",
    "schedule", "route", "journey", "phone", "laptop", "tablet", "camera", "screen", "keyboard", "mouse", "charger",
    "battery", "speaker", "headset", "microphone", "printer", "router", "monitor", "watch", "clock", "blender",
    "toaster", "kettle", "oven", "fridge", "freezer", "vacuum", "mattress", "sofa", "chair", "couch", "shelf",
    "drawer", "cabinet", "rug", "jacket", "shirt", "sweater", "dress", "skirt", "coat", "hat", "scarf", "glove",
    "boot", "shoe", "sneaker", "sandal", "backpack", "wallet", "belt", "umbrella", "movie", "film", "plot",
    "script", "soundtrack", "ending", "opening", "sequel", "actor", "actress", "director", "cast", "concert",
    "show", "performance", "album", "song", "novel", "story", "chapter", "author", "narrator", "book", "magazine",
    "podcast", "game", "level", "puzzle", "controller", "graphics", "interface", "update", "app", "website",
    "checkout", "delivery", "package", "shipping", "refund", "warranty", "price", "bill", "receipt", "discount",
    "subscription", "membership", "lesson", "course", "teacher", "tutor", "class", "lecture", "workshop", "seminar",
    "exam", "textbook", "campus", "library", "museum", "gallery", "exhibit", "park", "garden", "beach", "lake",
    "river", "trail", "mountain", "hike", "campsite", "hostel", "motel", "resort", "village", "market", "mall",
    "store", "shop", "bakery", "pharmacy", "clinic", "doctor", "nurse", "dentist", "appointment", "salon",
    "haircut", "massage", "mechanic", "repair", "plumber", "electrician", "installer", "neighborhood", "street",
    "location", "entrance", "atmosphere", "decor", "music", "lighting", "noise", "smell", "temperature", "portion",
    "flavor", "texture", "recipe", "sushi", "ramen", "noodle", "taco", "burrito", "curry", "dumpling", "omelette",
    "pancake", "waffle", "muffin", "croissant", "bagel", "smoothie", "juice", "lemonade", "milkshake", "espresso",
    "latte", "cappuccino", "yogurt", "cereal", "salmon", "shrimp", "chicken", "lamb", "pork", "tofu", "rice",
    "bean",
};
static const char *const MODIFIERS[] = {
    "italian", "french", "mexican", "thai", "indian", "chinese", "japanese", "greek", "spanish", "korean",
    "vietnamese", "turkish", "local", "regional", "new", "old", "main", "front", "back", "upper", "lower", "small",
    "large", "tiny", "huge", "little", "big", "tall", "short", "long", "wide", "narrow", "round", "square",
    "wooden", "metal", "plastic", "glass", "leather", "cotton", "woolen", "silk", "paper", "digital", "electric",
    "wireless", "portable", "manual", "automatic", "morning", "evening", "afternoon", "weekend", "weekday",
    "nightly", "daily", "weekly", "monthly", "annual", "seasonal", "holiday", "summer", "winter", "spring",
    "autumn", "hotel", "downtown", "uptown", "suburban", "rural", "coastal", "lakeside", "riverside", "seaside",
    "rooftop", "corner", "vegan", "vegetarian", "organic", "spicy", "sweet", "salty", "sour", "bitter", "savory",
    "grilled", "fried", "baked", "roasted", "steamed", "smoked", "frozen", "fresh", "hot", "iced", "warm",
    "chilled", "black", "green", "red", "blue", "white", "yellow", "purple", "golden", "silver", "pink", "orange",
    "brown", "gray", "first", "second", "third", "final", "last", "next", "previous", "latest", "original",
    "special", "regular", "standard", "basic", "premium", "deluxe", "express", "family", "kids", "adult", "senior",
    "student", "business", "economy", "private", "public", "shared", "single", "double", "twin", "king", "queen",
};
static const char *const VERBS[] = {
    "was", "is", "seemed", "felt", "looked", "tasted", "sounded", "remained", "proved", "appeared",
};
static const char *const DETS[] = {
    "the", "our", "my", "their", "this", "that", "every", "each",
};
static const char *const EVALS[] = {
    "excellent", "outstanding", "superb", "wonderful", "fantastic", "amazing", "perfect", "brilliant",
    "exceptional", "magnificent", "marvelous", "flawless", "stellar", "spectacular", "phenomenal", "sublime",
    "delightful", "extraordinary", "terrific", "splendid", "great", "lovely", "impressive", "delicious", "charming",
    "pleasant", "enjoyable", "beautiful", "friendly", "helpful", "comfortable", "spotless", "tasty", "generous",
    "attentive", "cozy", "elegant", "refreshing", "reliable", "gorgeous", "good", "nice", "fine", "decent", "solid",
    "tidy", "clean", "fair", "reasonable", "adequate", "acceptable", "satisfying", "polite", "calm", "quiet",
    "smooth", "handy", "useful", "neat", "welcoming", "mediocre", "bland", "dull", "average", "forgettable",
    "noisy", "cramped", "slow", "tired", "dated", "plain", "lukewarm", "uneven", "clumsy", "pricey", "stale",
    "messy", "stiff", "dim", "flimsy", "bad", "poor", "disappointing", "unpleasant", "rude", "dirty",
    "uncomfortable", "greasy", "soggy", "overpriced", "unreliable", "sloppy", "careless", "broken", "cold",
    "boring", "annoying", "unhelpful", "smelly", "tasteless", "terrible", "awful", "horrible", "disgusting",
    "dreadful", "atrocious", "abysmal", "appalling", "horrendous", "pathetic", "miserable", "revolting",
    "unacceptable", "useless", "filthy", "inedible", "hideous", "nasty", "rotten", "unbearable",
};
/* polarity of EVALS[i], in thirds: +3 strongest praise .. -3 strongest blame */
static const signed char EVAL_POLARITY[] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3};
static const char *const INTENSIFIERS[] = {
    "very", "really", "extremely", "incredibly", "truly", "quite", "rather", "fairly", "somewhat", "slightly",
    "pretty", "so",
};
static const double INTENSITY[] = {1.5, 1.5, 2.0, 1.9, 1.6, 1.2, 0.9, 0.8, 0.6, 0.5, 1.1, 1.4};

#endif
