"""Synthetic and augmented training data. Importing this package is cheap (torch and diffusers load on use).

    from generators import create_generator, list_generators
    from generators.speech import SpeechConfig

    generator = create_generator(SpeechConfig())
    result = generator.generate(GenerateRequest(class_name="yes", count=100), out_dir)
"""

# entries register themselves on import; each import is cheap
from generators import ddpm, speech, text_to_image  # noqa: F401
from generators.base import (
    GeneratedFile,
    GenerateRequest,
    GenerateResult,
    Generator,
    GeneratorUnavailable,
)
from generators.registry import (
    GENERATORS,
    create_generator,
    create_generator_by_name,
    generator_config,
    list_generators,
    register_generator,
)

__all__ = [
    "GENERATORS",
    "GenerateRequest",
    "GenerateResult",
    "GeneratedFile",
    "Generator",
    "GeneratorUnavailable",
    "create_generator",
    "create_generator_by_name",
    "generator_config",
    "list_generators",
    "register_generator",
]
