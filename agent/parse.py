"""Offline request parsing: plain language -> ParsedRequest -> DesignSpec.

"a smart-closet camera that sorts shirts, trousers, sneakers, bags and everything
else, on an STM32F446 with 128 KB RAM" becomes device STM32F446RE, classes
shirt/trouser/sneaker/bag, other=True and sram_bytes=131072. No LLM and no
network: small regexes, each with the reason it exists. When the device or the
classes cannot be found, ``spec_from_request`` raises ``MissingInformation``
whose message is the one question to ask back.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.spec import DataSpec, DesignSpec
from knowledge.devices import Device, find_device, list_devices
from knowledge.devices import normalize_device_name as _key
from knowledge.errors import MissingInformation, NanofactoryError

log = logging.getLogger(__name__)

KiB = 1024
MiB = 1024 * 1024
GiB = 1024 * MiB


class ParsedRequest(BaseModel):
    """What a request says, before it is validated into a DesignSpec."""

    model_config = ConfigDict(extra="forbid")

    device: str | None = Field(None, description="canonical catalog name")
    classes: list[str] = Field(default_factory=list, description="singular, lowercase, in the order mentioned")
    other: bool = False
    flash_bytes: int | None = None
    sram_bytes: int | None = None
    latency_ms: float | None = None
    accuracy_floor: float | None = None
    grayscale: bool = False
    image_size: int | None = None


# ---- devices -----------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")  # "esp32-s3" and "nucleo-f446re" stay one token
_LONGEST_ALIAS_WORDS = 5  # "raspberry pi zero 2 w"


def _device_named(candidate: str) -> Device | None:
    device = find_device(candidate)
    if device is None:
        return None
    if _key(candidate) in {_key(device.name), *(_key(a) for a in device.aliases)}:
        return device
    # find_device also accepts prefixes ("stm32l4r5zit6", "raspberry"); trust that only for a
    # single token carrying a part number, so "Raspberry Pi 4" is not taken for a Pi Zero 2 W
    return device if " " not in candidate and any(ch.isdigit() for ch in candidate) else None


def find_device_in(text: str) -> str | None:
    """The first catalog device mentioned, by name or alias, as its canonical name."""
    tokens = _TOKEN.findall(text.lower())
    for start in range(len(tokens)):
        for n in range(min(_LONGEST_ALIAS_WORDS, len(tokens) - start), 0, -1):
            device = _device_named(" ".join(tokens[start:start + n]))
            if device is not None:
                return device.name
    return None


# ---- numbers -----------------------------------------------------------------------------

# not the "446" of "STM32F446" nor the "32" of "ESP32"; "1,024" is one number (_value drops the comma)
_NUMBER = r"(?<![\w.])(?<!\d,)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:e\d+)?)"  # "1e3 KB" too
_UNITS = {"k": KiB, "m": MiB, "g": GiB, "b": 1}  # KB, K and KiB all mean 1024 bytes here
_AMOUNT = re.compile(
    _NUMBER + r"\s*(kib|kb|kbytes|kilobytes?|k|mib|mb|mbytes|megabytes?|m|gib|gb|gigabytes?|g|bytes?|b)\b")
_MEMORY_WORD = r"(sram|ram|memory|heap|flash|rom|storage)"
# a keyword after the amount ("128 KB of SRAM") wins over one before it ("RAM of 128 KB");
# neither may cross punctuation or "and", so "RAM 128 KB, flash 1 MB" pairs correctly
_WORD_AFTER = re.compile(r"\s*(?:(?!and\b|or\b)[a-z-]+\s+){0,2}?" + _MEMORY_WORD + r"\b")
_WORD_BEFORE = re.compile(r"\b" + _MEMORY_WORD + r"(?:\s+(?!and\b|or\b)[a-z-]+){0,3}\s*[:=<]?\s*$")
_LATENCY = re.compile(_NUMBER + r"\s*(milliseconds?|msecs?|ms|microseconds?|usecs?|us|µs|seconds?|secs?|s|fps)\b")
_ACCURACY_AFTER = re.compile(_NUMBER + r"\s*(%|percent)?\s*(?:top-?1\s+)?accura(?:cy|te)\b")
_ACCURACY_BEFORE = re.compile(
    r"\baccura(?:cy|te)\b(?:\s*(?:of|at|least|above|over|more|than|no|less|is|be|must|should|around|"
    r"about|>=|>|≥|:))*\s*" + _NUMBER + r"\s*(%|percent)?"
)


def _value(m: re.Match) -> float:
    return float(m.group(1).replace(",", ""))


def _refuse_negative(text: str, m: re.Match, what: str) -> None:
    """One sentence for a budget written with a minus ("-5 ms", "-64 KB RAM"), which _NUMBER reads without it;
    "5-10 ms" is a range, not a sign."""
    if text[:m.start()].endswith("-") and not text[:m.start() - 1][-1:].isalnum():
        raise NanofactoryError(f"The request asks for {text[m.start() - 1:m.end()]}; {what}, or leave it out.")


def find_memory(text: str) -> tuple[int | None, int | None]:
    """(flash_bytes, sram_bytes); the smallest figure of each kind, since budgets are limits."""
    text = text.lower()
    found: dict[str, list[int]] = {"flash": [], "sram": []}
    for m in _AMOUNT.finditer(text):
        word = _WORD_AFTER.match(text, m.end()) or _WORD_BEFORE.search(text[: m.start()])
        if word is None:
            continue  # "a 4K camera": an amount with no memory word is not a budget
        _refuse_negative(text, m, "a memory budget is a size above 0 (e.g. 64 KB)")
        if _value(m) == 0:
            raise NanofactoryError(f"The request asks for {m.group(0)} of {word.group(1).upper()}; a memory budget "
                                   "is a size above 0 (e.g. 64 KB), or leave it out.")
        kind = "flash" if word.group(1) in ("flash", "rom", "storage") else "sram"
        found[kind].append(round(_value(m) * _UNITS[m.group(2)[0]]))
    for kind, values in found.items():
        if len(set(values)) > 1:  # "64 KB RAM ... 32 KB RAM": a limit is met by meeting the smallest
            log.warning("The request states %d %s budgets (%s); the smallest, %s, is the one built for.", len(values),
                        "RAM" if kind == "sram" else kind, ", ".join(_size(v) for v in values), _size(min(values)))
    return min(found["flash"], default=None), min(found["sram"], default=None)


def _size(n: int) -> str:
    return f"{n / MiB:g} MB" if n % MiB == 0 else f"{n / KiB:g} KB" if n % KiB == 0 else f"{n:,} B"


def find_latency_ms(text: str) -> float | None:
    values = []
    text = text.lower()
    for m in _LATENCY.finditer(text):
        value, unit = _value(m), m.group(2)
        _refuse_negative(text, m, "a latency budget is a time above 0 (e.g. 50 ms)")
        if value == 0 and unit != "fps":
            raise NanofactoryError(f"The request asks for {m.group(0)}; a latency budget is a time above 0 "
                                   "(e.g. 50 ms), or leave it out.")
        if unit == "fps":
            if value == 0:
                raise NanofactoryError("The request asks for 0 fps; name a frame rate above 0 (10 fps leaves 100 ms "
                                       "per frame), or leave it out.")
            values.append(1000.0 / value)  # "10 fps" leaves 100 ms per frame
        else:
            values.append(value / 1000.0 if unit.startswith(("mic", "u", "µ")) else value if unit.startswith("m")
                          else value * 1000.0)
    return min(values, default=None)


def find_accuracy(text: str) -> float | None:
    text = text.lower()
    m = _ACCURACY_AFTER.search(text) or _ACCURACY_BEFORE.search(text)
    if m is None:
        return None
    value = _value(m)
    return value / 100 if m.group(2) or value > 1 else value  # "90%" and "90 accuracy" are 0.90


_GRAYSCALE = re.compile(
    r"\b(?:gr[ae]y\s*-?\s*scale|monochrome|mono|black[\s-]*(?:and|&)[\s-]*white|b/w|ir|infra-?red|thermal)\b"
)
_SIZE_PAIR = re.compile(r"(?<![\w.])(\d{1,4})\s*[x×]\s*\d{1,4}(?![\w.])")  # "96x96"
_SIZE_PX = re.compile(_NUMBER + r"\s*-?\s*(?:px|pixels?)\b")  # "at 64 px", "64-pixel"


def find_image_size(text: str) -> int | None:
    m = _SIZE_PAIR.search(text.lower()) or _SIZE_PX.search(text.lower())
    return int(_value(m)) if m else None


# ---- classes -----------------------------------------------------------------------------

_VERB = re.compile(
    r"\b(?:sort(?:s|ing)?|recogni[sz](?:e|es|ing)|detect(?:s|ing)?|classif(?:y|ies|ying)|"
    r"distinguish(?:es|ing)?|differentiat(?:e|es|ing)|tell(?:s|ing)?\s+apart|spot(?:s|ting)?|"
    r"identif(?:y|ies|ying)|separat(?:e|es|ing)|categori[sz](?:e|es|ing))\b"
)
_CONTRAST_VERB = re.compile(r"^(?:distinguish|differentiat|tell|separat)")  # "cats from dogs" is a list
# "tell cats and dogs apart", "tell mice apart from rats"
_TELL_APART = re.compile(r"\btell(?:s|ing)?\s+([^.;:]+?)\s+apart\b(?:\s+from\s+([^.;:,]+))?")
_LABELED_LIST = re.compile(r"\b(?:classes|labels|categories)\s*:")  # "Classes: forklift, pallet, person"
_LIST_WORD = re.compile(r"\b(?:between|into)\b")
_TASK_NOUN = re.compile(
    r"\b(?:detector|recogni[sz]er|classifier|detection|recognition|classification|sorter|spotter|identifier)s?\b"
)
_FOR = re.compile(r"\bfor\b")
# an enumeration ends where the sentence turns to the device, budgets or purpose
_STOP = re.compile(
    r"[.;!?()\[\]\"\n]|\s[-–—]\s|—|\b(?:on|for|with|that|which|who|running|runs?|at|under|using|in|within|"
    r"below|above|ideally|to|so|when|where|while|without|inside|via|because|if|it|they|we|but|from)\b"
)
_SEPARATOR = re.compile(r",|/|&|\+|\b(?:and|or|nor|vs\.?|versus|plus|as well as)\b")
_OTHER = re.compile(
    r"\b(?:everything|anything|something)\s+else\b|\bthe\s+rest\b|\bnone\s+of\s+(?:these|those|them|the\s+above)\b|"
    r"(?<!each\s)\bothers?\b|\bunknown\b"
)
_DETERMINERS = {
    "a", "an", "the", "some", "any", "all", "my", "our", "your", "their", "its", "this", "these", "those",
    "each", "every", "either", "both", "different", "various", "several", "many", "multiple", "only", "just",
}
_NOT_A_CLASS = _DETERMINERS | {  # words that can precede "detector" without naming what it detects
    "i", "me", "we", "need", "want", "build", "make", "create", "train", "give", "please", "is", "be", "use",
    "tiny", "small", "simple", "smart", "cheap", "fast", "quick", "little", "basic", "good", "robust", "new",
    "lightweight", "low-power", "real-time", "realtime", "image", "images", "photo", "object", "objects",
    "vision", "visual", "camera", "model", "neural", "cnn", "ml", "ai", "edge", "embedded", "tinyml", "on-device",
}
_LEADING_FILLER = re.compile(r"^(?:(?:images?|photos?|pictures?|frames?|kinds?|types?|sorts?) of|such as|like|"
                             r"whether (?:[a-z-]+ ){0,4}?(?:is|are))\s+")  # "whether the door is open or closed"
_TRAILING_FILLER = re.compile(r"\s+(?:images?|photos?|pictures?|etc)$")

_IRREGULAR = {
    "people": "person", "mice": "mouse", "men": "man", "women": "woman", "children": "child", "geese": "goose",
    "feet": "foot", "teeth": "tooth", "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf",
    "wolves": "wolf", "shelves": "shelf", "scarves": "scarf", "halves": "half", "loaves": "loaf",
    "calves": "calf", "thieves": "thief", "oxen": "ox", "cacti": "cactus", "fungi": "fungus",
}
_UNCHANGED = {"clothes", "series", "species", "sheep", "fish", "deer", "news", "aircraft",
              # plural-only nouns: "a trouser" means nothing to a text embedder ("trouser" lands near "grouse")
              "trousers", "jeans", "pants", "shorts", "leggings", "tights", "pajamas", "scissors", "pliers",
              "tongs", "tweezers", "sunglasses", "binoculars", "headphones", "earphones"}
_IE_NOUNS = {"cookie", "movie", "tie", "pie", "hoodie", "beanie", "zombie", "brownie", "selfie", "onesie",
             "bootie", "goalie", "smoothie", "rookie", "calorie", "magpie", "budgie", "collie", "yorkie"}
_OE_NOUNS = {"shoe", "toe", "canoe", "oboe", "hoe", "foe"}


def singular(word: str) -> str:
    """The singular of a simple English plural: shirts->shirt, boxes->box, berries->berry."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _UNCHANGED or len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word  # already singular: glass, dress, bus, iris
    if word.endswith("ies"):
        return word[:-1] if word[:-1] in _IE_NOUNS else word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith("oes") and word[:-1] not in _OE_NOUNS:
        return word[:-2]  # tomatoes -> tomato, but shoes -> shoe
    return word[:-1] if word.endswith("s") else word


def _clean_item(item: str) -> str | None:
    """A class name from one list item, or None for an empty or numeric one."""
    words = item.split()
    while words and words[0] in _DETERMINERS:
        words.pop(0)
    name = _TRAILING_FILLER.sub("", _LEADING_FILLER.sub("", " ".join(words)))
    name = re.sub(r"[^a-z0-9' -]", "", name).strip(" -'")
    if not name or not name[0].isalpha() or name in ("other", "others"):
        return None  # "between 50 and 100 ms" lists numbers; "from each other" names nothing
    *head, last = name.split()
    return " ".join([*head, singular(last)])


def _split_items(phrase: str) -> tuple[list[str], bool]:
    """(class names, whether an 'everything else' item was among them)."""
    # "pet-door" names one thing in two words; "t-shirt" and "x-ray" keep their dash
    phrase = re.sub(r"(?<=\w\w)-(?=\w)", " ", phrase)
    names, other = [], False
    for item in _SEPARATOR.split(phrase):
        if _OTHER.search(item) or item.strip() in ("nothing", "neither"):  # "cats, dogs or nothing"
            other = True
        elif (name := _clean_item(item.strip())) and name not in names:
            names.append(name)
    return names, other


def _enumeration(text: str, start: int, contrast: bool = False) -> str:
    """The list that starts at ``start`` and runs to the first stop word or punctuation."""
    rest = text[start:]
    if contrast:
        rest = re.sub(r"\bfrom\b", ",", rest)  # "tells cats from dogs"
    stop = _STOP.search(rest)
    colon = rest.find(":")
    if 0 <= colon < (stop.start() if stop else len(rest)):
        rest = rest[colon + 1:]  # "sorts three kinds: shirts, bags and shoes"
        stop = _STOP.search(rest)
    segment = rest[: stop.start()] if stop else rest
    segment = re.sub(r"^\s*between\b", "", segment)
    return re.split(r"\b(?:into|as)\b(?!\s+well)", segment)[-1]  # "sorts laundry into shirts and socks"


def _task_noun_phrase(text: str, noun_start: int) -> str:
    """The words just before "detector": "a person detector" -> "person"."""
    taken: list[str] = []
    for word in reversed(text[:noun_start].split()):
        if word in _NOT_A_CLASS or not re.fullmatch(r"[\w-]+", word) or len(taken) == 4:
            break
        taken.insert(0, word)
    return " ".join(taken)


# "faces with and without masks": one head, one object, both words
_WITH_AND_WITHOUT = re.compile(r"\b(with(?:out)?)\s+(?:and|or|vs\.?|versus)\s+(with(?:out)?)\s+")
_WITH = re.compile(r"\b(with(?:out)?)\b\s*")
# "cars with lights on and cars with lights off": an "on" that ends an item is the attribute's, not a device's
_STOP_BUT_WITH = re.compile(_STOP.pattern.replace("with|", "").replace("without|", "")
                            .replace("(?:on|", r"(?:on(?!\s*(?:[,.]|and\b|or\b|$))|"))


def _named(words: list[str]) -> str | None:
    """A noun phrase as a class name: determiners dropped, its last word singular."""
    return _clean_item(" ".join(words))


def _attribute_classes(text: str) -> list[str]:
    """Classes that differ by what they have: "people with hats, people without hats", "faces with and without
    masks", "shirts with long sleeves and shirts with short sleeves" -> "person with hat", "person without hat".
    Only a list of at least two such items counts, so "cats and dogs with a camera" stays a list of animals."""
    if m := _WITH_AND_WITHOUT.search(text):
        head = []
        for word in reversed(text[: m.start()].split()):  # "a mask detector for faces with and without masks"
            if (word in _NOT_A_CLASS or _STOP.fullmatch(word) or _TASK_NOUN.fullmatch(word) or _VERB.fullmatch(word)
                    or len(head) == 3):
                break
            head.insert(0, word)
        stop = _STOP.search(text, m.end())
        obj = text[m.end(): stop.start() if stop else len(text)]
        obj = _SEPARATOR.split(obj)[0].split()
        head_name, obj_name = _named(head), _named(obj[:3])
        if head_name and obj_name:
            return [f"{head_name} {m.group(1)} {obj_name}", f"{head_name} {m.group(2)} {obj_name}"]
    for trigger in [*_VERB.finditer(text), *_LABELED_LIST.finditer(text), *_LIST_WORD.finditer(text)]:
        rest = text[trigger.end():]
        if _CONTRAST_VERB.match(trigger.group()):
            rest = re.sub(r"\bfrom\b", ",", rest)  # "tell cats with a collar from cats without"
        colon = rest.find(":")
        stop = _STOP_BUT_WITH.search(rest)
        if 0 <= colon < (stop.start() if stop else len(rest)):
            rest = rest[colon + 1:]
            stop = _STOP_BUT_WITH.search(rest)
        items = [i.strip() for i in _SEPARATOR.split(rest[: stop.start()] if stop else rest) if i.strip()]
        parts = [_WITH.split(i, maxsplit=1) for i in items]  # [head, "with", object] or [item]
        if sum(len(p) == 3 for p in parts) < 2:
            continue
        names, head, obj, word = [], None, None, None
        for p in parts:
            if len(p) == 1:  # a class without the attribute ("background"), or "everything else"
                if not _OTHER.search(p[0]) and (name := _clean_item(p[0])) and name not in names:
                    names.append(name)
                continue
            own_head, own_obj = _named(p[0].split()), _named(p[2].split())
            if own_head is None and own_obj is not None and p[1] == word:
                names = []  # "parcels with barcodes, with a camera": a second "with" that names no class
                break
            head = own_head or head  # "people with hats and without hats": the head carries over,
            obj = own_obj or obj  # "cats with a collar and cats without": so does the object
            word = p[1]
            if head and obj and (name := f"{head} {p[1]} {obj}") not in names:
                names.append(name)
        if len(names) >= 2:
            return names
    return []


def find_classes(text: str) -> tuple[list[str], bool]:
    """(classes in order, other); trigger kinds are tried from the most to the least reliable."""
    text = text.lower()
    other = bool(_OTHER.search(text))
    for attribute in (_GRAYSCALE, _SIZE_PAIR, _SIZE_PX, _AMOUNT, _LATENCY, _ACCURACY_AFTER, _ACCURACY_BEFORE):
        text = attribute.sub(".", text)  # "..., empty or occupied, black-and-white": a stated attribute ends a list
    if names := _attribute_classes(text):
        return names, other
    candidates = [_enumeration(text, m.end(), bool(_CONTRAST_VERB.match(m.group()))) for m in _VERB.finditer(text)]
    candidates = [_enumeration(text, m.end()) for m in _LABELED_LIST.finditer(text)] + candidates
    # "Leaf disease sorter: healthy, blight, rust": the list after the colon, not the words before the noun
    candidates += [_enumeration(text, m.end()) for m in _TASK_NOUN.finditer(text) if text[m.end():].startswith(":")]
    candidates += [m.group(1) + (f", {_enumeration(m.group(2), 0)}" if m.group(2) else "")
                   for m in _TELL_APART.finditer(text)]
    candidates += [_enumeration(text, m.end()) for m in _LIST_WORD.finditer(text)]
    task_phrases = [_task_noun_phrase(text, m.start()) for m in _TASK_NOUN.finditer(text)]
    candidates += task_phrases
    # a list set off by a dash, a colon or parentheses ("Sorting recyclables on a nucleo — plastic bottles, cans,
    # glass jars"), and a "for" list with an "everything else" in it ("a pet-door recognizer for cats, dogs and
    # everything else"); a list of qualities ("a shirt sorter - fast, small, cheap") or of devices is none
    set_off = [_split_items(_enumeration(text, m.end())) for m in re.finditer(r"\s[-–—]\s|—|:", text)]
    set_off += [_split_items(m.group(1)) for m in re.finditer(r"\(([^()]*)\)", text)]
    for_lists = [_split_items(_enumeration(text, m.end())) for m in _FOR.finditer(text)]
    set_off, for_lists = ([d for d in lists if len(d[0]) >= 2 and not any(
        name in _NOT_A_CLASS or find_device_in(name) for name in d[0])] for lists in (set_off, for_lists))
    for phrase in candidates:
        names, said_other = _split_items(phrase)
        # one name where a list follows it: the name was the task ("a pet-door recognizer – cats, dogs – on
        # nrf52") or a word for all of the list ("recyclables"), not a class of its own
        if len(names) == 1 and phrase in task_phrases and (lists := set_off + [f for f in for_lists if f[1]]):
            names, said_other = lists[0]
        elif len(names) == 1 and set_off and re.search(rf"\b{re.escape(names[0])}s\b", text):
            names, said_other = set_off[0]
        if names:
            return names, other or said_other or len(names) == 1
    for names, said_other in for_lists + set_off:  # "a classifier for cats and dogs": only a real list counts
        return names, other or said_other
    return [], other


# ---- requests ----------------------------------------------------------------------------


def parse_request(text: str) -> ParsedRequest:
    """Everything the request states; what it does not state stays None/empty."""
    classes, other = find_classes(text)
    flash_bytes, sram_bytes = find_memory(text)
    return ParsedRequest(
        device=find_device_in(text),
        classes=classes,
        other=other,
        flash_bytes=flash_bytes,
        sram_bytes=sram_bytes,
        latency_ms=find_latency_ms(text),
        accuracy_floor=find_accuracy(text),
        grayscale=bool(_GRAYSCALE.search(text.lower())),
        image_size=find_image_size(text),
    )


def _missing_question(parsed: ParsedRequest) -> str:
    devices = ", ".join(d.name for d in list_devices())
    example = f'"a camera on an {parsed.device or "RP2040"} that tells apart cats, dogs and everything else"'
    if parsed.device is None and not parsed.classes:
        return (f"Which device should it run on, and which classes should it tell apart? Name a device "
                f"(one of: {devices}) and the classes, e.g. {example}.")
    if parsed.device is None:
        return f"Which device should the model run on? Name one of: {devices}."
    return f"Which classes should the model tell apart? Name the classes, e.g. {example}."


def spec_from_request(text: str, data: DataSpec, examples_dir: Path | str | None = None) -> DesignSpec:
    """A validated DesignSpec for ``text``; MissingInformation asks for a missing device or classes."""
    parsed = parse_request(text)
    if parsed.device is None or not parsed.classes:
        raise MissingInformation(_missing_question(parsed))
    if examples_dir is not None:
        data = data.model_copy(update={"examples_dir": Path(examples_dir)})
    fields: dict = {
        "request": text,
        "device": parsed.device,
        "classes": [{"name": name} for name in parsed.classes],
        "other": parsed.other,
        "budgets": {k: getattr(parsed, k) for k in ("flash_bytes", "sram_bytes", "latency_ms", "accuracy_floor")},
        "data": data,
    }
    if parsed.grayscale or parsed.image_size is not None:
        fields["input"] = {"channels": 1 if parsed.grayscale else 3}
        if parsed.image_size is not None:
            fields["input"]["size"] = parsed.image_size
    return DesignSpec.from_dict(fields, source="request")
