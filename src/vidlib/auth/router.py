"""``/api/v1/auth`` and ``/api/v1/users``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from vidlib.auth import service
from vidlib.auth.dependencies import CurrentUser
from vidlib.auth.schemas import Credentials, LoginBody, RefreshBody, TokenPair, UserOut
from vidlib.auth.tokens import JWTService
from vidlib.db.session import SessionDep
from vidlib.errors import API_ERRORS, error_response, error_responses

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=API_ERRORS)
users_router = APIRouter(prefix="/api/v1/users", tags=["users"], responses=API_ERRORS)

# Every auth call takes a body (capped: 413); a wrong credential or token is a 401.
_CREDENTIALS: dict[int | str, dict[str, Any]] = error_responses(401, 413, 422)


async def _jwt(request: Request) -> JWTService:
    jwt_service: JWTService = request.app.state.jwt_service
    return jwt_service


def _refresh_ttl(request: Request) -> int:
    return int(request.app.state.settings.refresh_token_ttl_seconds)


JWTDep = Annotated[JWTService, Depends(_jwt)]


@auth_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses={**error_responses(413, 422), 409: error_response(409, "Email taken")},
)
async def register(body: Credentials, session: SessionDep) -> UserOut:
    """Create an account."""
    user = await service.register(session, email=body.email, password=body.password)
    return UserOut.model_validate(user)


@auth_router.post("/login", response_model=TokenPair, responses=_CREDENTIALS)
async def login(body: LoginBody, session: SessionDep, request: Request, jwt: JWTDep) -> TokenPair:
    """Exchange email and password for an access and a refresh token."""
    user = await service.authenticate(session, email=body.email, password=body.password)
    return await service.issue_pair(
        session, jwt, user_id=user.id, refresh_ttl_seconds=_refresh_ttl(request)
    )


@auth_router.post("/token", response_model=TokenPair, responses=_CREDENTIALS)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    request: Request,
    jwt: JWTDep,
) -> TokenPair:
    """OAuth2 password flow (``username`` is the email), for the docs page's Authorize button."""
    user = await service.authenticate(session, email=form.username, password=form.password)
    return await service.issue_pair(
        session, jwt, user_id=user.id, refresh_ttl_seconds=_refresh_ttl(request)
    )


@auth_router.post("/refresh", response_model=TokenPair, responses=_CREDENTIALS)
async def refresh(
    body: RefreshBody, session: SessionDep, request: Request, jwt: JWTDep
) -> TokenPair:
    """A new token pair; the refresh token given is dead from now on."""
    return await service.rotate(
        session, jwt, refresh_token=body.refresh_token, refresh_ttl_seconds=_refresh_ttl(request)
    )


@users_router.get("/me", response_model=UserOut, responses=error_responses(401))
async def me(user: CurrentUser) -> UserOut:
    """The authenticated user."""
    return UserOut.model_validate(user)
