"""``CurrentUser``: the one place a bearer token becomes a user."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from vidlib.auth.accounts import AccountCache
from vidlib.auth.models import Account
from vidlib.auth.repository import UserRepository
from vidlib.auth.tokens import VERIFIED_PRINCIPAL, InvalidToken, Principal, TokenVerifier
from vidlib.errors import Unauthorized

log = logging.getLogger("vidlib.auth")

# auto_error=False: a missing token gets our own 401 body and challenge.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_verifier(request: Request) -> TokenVerifier:
    """The app's token verifier."""
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


async def get_current_user(
    request: Request,
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Account:
    """The authenticated user, or 401 for any missing, invalid or orphaned token."""
    if not token:
        raise Unauthorized("Not authenticated.")
    verified = getattr(request.state, VERIFIED_PRINCIPAL, None)
    if verified is not None and verified[0] == token:
        principal: Principal = verified[1]
    else:
        try:
            principal = verifier.verify(token)
        except InvalidToken as exc:
            log.info("token rejected: %s", exc)
            raise Unauthorized("Could not validate credentials.") from exc
    accounts: AccountCache = request.app.state.accounts
    user = accounts.get(principal.user_id)
    if user is not None:
        return user
    generation = accounts.generation
    # A session of its own, opened only on a miss (a cached caller costs no connection).
    async with request.app.state.read_sessionmaker() as session:
        user = await UserRepository(session).account(principal.user_id)
    if user is None:
        raise Unauthorized("Could not validate credentials.")
    accounts.put(user, generation)
    return user


CurrentUser = Annotated[Account, Depends(get_current_user)]
