"""Gradio demo (UI only)."""
