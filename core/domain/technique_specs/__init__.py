"""One module per finetuning technique: its settings class, traits, memory rule and form fields.

Each module registers its :class:`~core.domain.techniques.TechniqueSpec` on import; the list of
modules is :data:`core.domain.techniques.BUILTIN_TECHNIQUES`.
"""
