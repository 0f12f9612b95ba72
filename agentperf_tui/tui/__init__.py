"""The Textual dashboard: panels fed by engine frames (live or replay). Nothing else imports Textual."""
