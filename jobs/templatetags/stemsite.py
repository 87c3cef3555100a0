from django import template

register = template.Library()


@register.filter
def roughly(seconds) -> str:
    """A time estimate in words: 'under a minute', 'about 4 minutes', 'about 1 h 20 min'."""
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min"
