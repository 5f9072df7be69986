"""baton.actors: the Ray shell, where every side effect lives."""
