"""Text analysis for zh, en and mixed support text."""

from kb.text.analyzer import Analysis, Analyzer, detect_lang

__all__ = ["Analysis", "Analyzer", "detect_lang"]
