"""Teachers: a registry of large models that label data for the student.

    teacher = create_teacher(TeacherConfig(name="clip", model="openai/clip-vit-base-patch32"))
"""

from __future__ import annotations

from knowledge.registry import Registry
from knowledge.teachers.base import Teacher, TeacherConfig

TEACHERS: Registry[Teacher] = Registry("teacher")
register_teacher = TEACHERS.register


def create_teacher(config: TeacherConfig) -> Teacher:
    return TEACHERS.create(config.name, config)


def list_teachers() -> list[str]:
    return TEACHERS.names()


# entries register themselves on import; each import is cheap (torch loads on use)
from knowledge.teachers import clip, efficientnet_lite  # noqa: E402,F401

__all__ = ["Teacher", "TeacherConfig", "create_teacher", "list_teachers", "register_teacher"]
