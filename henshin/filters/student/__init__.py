"""The student family: ``--filter student``, a network ``henshin distill`` made from a slow teacher chain."""

from henshin.filters.student.filter import StudentFilter, StudentParams

__all__ = ["StudentFilter", "StudentParams"]
