"""The generator registry (timm's ``register_model`` / ``create_model``).

    @register_generator("espeak-flite", SpeechConfig)
    class SpeechGenerator(Generator): ...

    generator = create_generator(SpeechConfig())        # by config
    generator = create_generator_by_name("ddpm", model="runs/x/synthetic/ddpm")

Each entry names its config class, so a name plus a few fields (an agent tool call, a CLI
flag) becomes a validated config without a hand-written table.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from generators.base import Generator
from knowledge.errors import NanofactoryError
from knowledge.registry import Registry

GENERATORS: Registry[type[Generator]] = Registry("generator")
CONFIGS: dict[str, type[BaseModel]] = {}


def register_generator(name: str, config_class: type[BaseModel]):
    def decorate(cls: type[Generator]) -> type[Generator]:
        GENERATORS.register(name)(cls)
        CONFIGS[name] = config_class
        cls.name = name
        return cls

    return decorate


def list_generators() -> list[str]:
    return GENERATORS.names()


def generator_config(name: str, **fields) -> BaseModel:
    """The validated config of generator ``name`` from a few fields; one sentence on a bad field."""
    GENERATORS.get(name)  # unknown names list the valid ones
    try:
        return CONFIGS[name].model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise NanofactoryError(f"Generator {name!r}: field `{where}`: {first['msg']}.") from None


def create_generator(config: BaseModel) -> Generator:
    name = getattr(config, "name", None)
    if name is None:
        raise TypeError(f"{type(config).__name__} is not a generator config (it has no `name`)")
    return GENERATORS.create(name, config)


def create_generator_by_name(name: str, **fields) -> Generator:
    return create_generator(generator_config(name, **fields))
