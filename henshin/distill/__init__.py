"""Distillation: a slow face filter chain (the teacher) taught to a small student network.

``pairs`` cuts crops the way the engine does and has the teacher make the targets,
``train`` fits the student, ``export`` stores it as the user's own model; ``run`` ties
them together for ``henshin distill``. Only ``henshin.cli`` imports this package.
"""
