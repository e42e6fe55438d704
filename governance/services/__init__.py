"""Write-side services of the governance core. Each function is one named action (HackSoft/Zulip style)."""
