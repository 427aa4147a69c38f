"""Finetune Studio: a Gradio app on top of ``core`` (Data, Train, Evaluate, Compare and Chat tabs)."""
