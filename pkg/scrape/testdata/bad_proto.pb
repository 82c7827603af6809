
ÿÿÿ™"garbage