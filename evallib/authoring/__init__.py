"""Writing evaluations: golden sets (`datasets`), running a task over one and scoring it
(`evaluation`, whose `evaluate` is `evallib.evaluate`), human review sheets and labels
(`review`), and failing production traces promoted into a golden set (`promote`)."""

__all__ = ["datasets", "evaluation", "promote", "review"]
