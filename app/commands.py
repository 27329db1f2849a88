"""The console's name for the one command grammar (kept so existing imports work).

Everything lives in `app.control.grammar`; see there.
"""

from app.control.grammar import (
    CONSOLE_ONLY,
    HELP_COMMANDS,
    HINT,
    MAX_BATCH,
    SERVER_ACTIONS,
    SPECS,
    VOCABULARY,
    AddServer,
    CancelBatch,
    ClearPanels,
    Command,
    Compare,
    Invalid,
    Quit,
    RunBatch,
    SendRequest,
    ServerAction,
    ServerCommand,
    ServerSetting,
    SetAlgorithm,
    SetWeight,
    Show,
    ShowHelp,
    TogglePause,
    Work,
    help_text,
    parse_command,
    parse_count,
    parse_work,
    suggest,
)

__all__ = [
    "CONSOLE_ONLY", "HELP_COMMANDS", "HINT", "MAX_BATCH", "SERVER_ACTIONS", "SPECS",
    "VOCABULARY", "AddServer", "CancelBatch", "ClearPanels", "Command", "Compare", "Invalid",
    "Quit", "RunBatch", "SendRequest", "ServerAction", "ServerCommand", "ServerSetting",
    "SetAlgorithm", "SetWeight", "Show", "ShowHelp", "TogglePause", "Work", "help_text",
    "parse_command", "parse_count", "parse_work", "suggest",
]
