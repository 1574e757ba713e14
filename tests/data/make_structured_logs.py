"""Write the three structured chat logs of the tests (issue 23), deterministically:

- ``extraction_logs.jsonl``: logged requests with ``response_format: json_schema`` (a contact card from a
  message) and their ``chat.completion`` replies, the JSON as the reply's content;
- ``classification_logs.jsonl``: chat JSONL, a review and its sentiment label (positive / negative / neutral);
- ``tool_logs.jsonl``: logged requests with ``tools``, the reply an assistant turn with ``tool_calls``; some
  rows carry an earlier tool call and its ``tool`` result as context.

Run ``python tests/data/make_structured_logs.py`` to rewrite them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST = ["Ana", "Ben", "Chloe", "David", "Eva", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo"]
LAST = ["Silva", "Meyer", "Dubois", "Novak", "Rossi", "Khan", "Berg", "Moreau", "Costa", "Weber"]
TAGS = ["billing", "urgent", "refund", "login", "shipping", "feedback"]
CONTACT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city", "zip"], "additionalProperties": False},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "email", "age", "address", "tags"],
    "additionalProperties": False,
}
CITIES = [("Lisbon", "1100"), ("Berlin", "10115"), ("Paris", "75001"), ("Prague", "11000"), ("Rome", "00118")]
WEATHER_CITIES = ["Oslo", "Madrid", "Vienna", "Dublin", "Athens", "Warsaw", "Zurich", "Porto", "Lyon", "Krakow",
                  "Seville", "Bergen"]
REVIEWS = {
    "positive": ["The soup was great and the staff were kind.", "Fast delivery, works perfectly.",
                 "I love this phone, the battery lasts for days.", "Best coffee in town, will come back.",
                 "Clear instructions and it worked the first time.", "Lovely room with a great view.",
                 "The course was fun and I learnt a lot.", "Excellent support, they fixed it in minutes.",
                 "Comfortable shoes, I walk all day in them.", "A beautiful book, I read it twice.",
                 "Great value for the price.", "The kids loved the show."],
    "negative": ["The package arrived broken.", "Cold food and a rude waiter.", "It stopped working after a week.",
                 "Support never answered my emails.", "The room was dirty and noisy.", "Too expensive for what it is.",
                 "The app crashes every time I open it.", "Late again, the third time this month.",
                 "The shirt shrank after one wash.", "Terrible sound, I returned it.",
                 "The train was cancelled with no notice.", "Worst pizza I have had."],
    "neutral": ["The parcel came on Tuesday.", "It is a blue bag with two pockets.", "The shop opens at nine.",
                "I bought it for my brother.", "The film is two hours long.", "It comes in three sizes.",
                "The hotel is near the station.", "I used it twice so far.", "The box has a manual inside.",
                "We ordered the set menu.", "The update installed overnight.", "It weighs about a kilo."],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string"},
                                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                                          "required": ["city", "unit"]}}},
    {"type": "function", "function": {"name": "convert_currency", "description": "Convert an amount of money.",
                                      "parameters": {"type": "object", "properties": {
                                          "amount": {"type": "number"}, "from": {"type": "string"},
                                          "to": {"type": "string"}}, "required": ["amount", "from", "to"]}}},
    {"type": "function", "function": {"name": "book_table", "description": "Book a restaurant table.",
                                      "parameters": {"type": "object", "properties": {
                                          "restaurant": {"type": "string"}, "people": {"type": "integer"},
                                          "time": {"type": "string"}}, "required": ["restaurant", "people", "time"]}}},
]


def _completion(message: dict, n: int) -> dict:
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def extraction(rng: random.Random, n: int = 36) -> list[dict]:
    fmt = {"type": "json_schema", "json_schema": {"name": "contact", "strict": True, "schema": CONTACT_SCHEMA}}
    rows = []
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
        city, zip_code = CITIES[i % len(CITIES)]
        age, tags = 20 + (i * 3) % 50, sorted(rng.sample(TAGS, 1 + i % 3))
        email = f"{first.lower()}.{last.lower()}{i}@example.com"
        text = (f"Hi, this is {first} {last} ({age}) from {city} {zip_code}. Reach me at {email}. "
                f"It is about: {', '.join(tags)}.")
        card = {"name": f"{first} {last}", "email": email, "age": age,
                "address": {"city": city, "zip": zip_code}, "tags": tags}
        request = {"model": "gpt-4o-mini", "response_format": fmt, "messages": [
            {"role": "system", "content": "Extract the sender's contact card as JSON."},
            {"role": "user", "content": text}]}
        rows.append({"request": request,
                     "response": _completion({"role": "assistant", "content": json.dumps(card)}, i)})
    return rows


def classification(rng: random.Random) -> list[dict]:
    pairs = [(text, label) for label, texts in REVIEWS.items() for text in texts]
    rng.shuffle(pairs)
    system = "Classify the review's sentiment. Reply with one word: positive, negative or neutral."
    return [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": text},
                          {"role": "assistant", "content": label}]} for text, label in pairs]


def _call(n: int, name: str, args: dict) -> dict:
    return {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def tool_calling(rng: random.Random, n: int = 36) -> list[dict]:
    rows = []
    for i in range(n):
        city = CITIES[i % len(CITIES)][0]
        kind = i % 3
        if kind == 0:
            unit, place = ("celsius" if i % 2 else "fahrenheit"), WEATHER_CITIES[i // 3]
            ask, call = f"What's the weather in {place} in {unit}?", ("get_weather", {"city": place, "unit": unit})
        elif kind == 1:
            amount = 10 * (i + 1)
            ask = f"How much is {amount} EUR in USD?"
            call = ("convert_currency", {"amount": amount, "from": "EUR", "to": "USD"})
        else:
            people, time = 2 + i % 4, f"{18 + i % 4}:00"
            ask = f"Book a table at Casa {city} for {people} at {time}."
            call = ("book_table", {"restaurant": f"Casa {city}", "people": people, "time": time})
        system = {"role": "system", "content": "You are a travel assistant. Use the tools."}
        earlier = []
        if i % 4 == 3:  # an earlier call and its result as context, then the next call
            earlier = [{"role": "user", "content": f"First check the weather in {city} in celsius."},
                       {"role": "assistant", "content": None,
                        "tool_calls": [_call(1000 + i, "get_weather", {"city": city, "unit": "celsius"})]},
                       {"role": "tool", "tool_call_id": f"call_{1000 + i}",
                        "content": json.dumps({"temp": 10 + i % 15, "sky": "clear"})}]
        messages = [system, *earlier, {"role": "user", "content": ask}]
        reply = {"role": "assistant", "content": None, "tool_calls": [_call(i, *call)]}
        rows.append({"request": {"model": "gpt-4o-mini", "tools": TOOLS, "messages": messages},
                     "response": _completion(reply, i)})
    return rows


def main() -> None:
    rng = random.Random(23)
    for name, rows in (("extraction_logs.jsonl", extraction(rng)), ("classification_logs.jsonl", classification(rng)),
                       ("tool_logs.jsonl", tool_calling(rng))):
        (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
