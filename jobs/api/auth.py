"""Who is calling: a personal token (Bearer, no CSRF), or the browser's session (CSRF enforced)."""

from ninja.security import HttpBearer
from ninja.security import SessionAuth as NinjaSessionAuth

from jobs.api.tokens import user_for_token


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` with a personal token from the account page."""

    def authenticate(self, request, token: str):
        return user_for_token(token)


class SessionAuth(NinjaSessionAuth):
    """The logged-in browser; unsafe methods need the CSRF token, as on the site's forms.

    ninja checks CSRF before it looks at the session, which would answer a script without a
    token 403 instead of 401; the check runs only once a session has actually logged someone in.
    """

    def __init__(self):
        super().__init__(csrf=True)

    def __call__(self, request):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


token_auth = TokenAuth()
session_auth = SessionAuth()
