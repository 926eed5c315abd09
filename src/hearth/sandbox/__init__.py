"""Running untrusted Python in a bubblewrap sandbox (``runner.py``); no HTTP, no database."""

from hearth.sandbox.runner import CreatedFile, Limits, Sandbox, SandboxResult, SandboxUnavailable, ensure_available

__all__ = ["CreatedFile", "Limits", "Sandbox", "SandboxResult", "SandboxUnavailable", "ensure_available"]
