"""Handlers: organizations, teams, members and robots."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.keys import ORGANIZATIONS
from origin.metadata.access import Account, Team


def _team_view(team: Team, members: list[str]) -> schemas.Team:
    return schemas.Team(
        name=team.name,
        role=team.role,  # type: ignore[arg-type]
        external_group=team.external_group,
        members=members,
    )


def _robot_view(robot: Account) -> schemas.Robot:
    return schemas.Robot(name=robot.name, expires_at=robot.expires_at, created_at=robot.created_at)


async def _organization(request: web.Request, caller: Caller, name: str) -> schemas.Organization:
    org, teams = await request.app[ORGANIZATIONS].show(caller, name)
    return schemas.Organization(name=org.name, teams=[_team_view(*t) for t in teams])


async def create_organization(
    request: web.Request, caller: Caller, body: schemas.OrganizationCreate
) -> web.Response:
    await request.app[ORGANIZATIONS].create(caller, body.name)
    return json(await _organization(request, caller, body.name), 201)


async def get_organization(request: web.Request, caller: Caller, _: Any) -> web.Response:
    return json(await _organization(request, caller, request.match_info["org"]))


async def create_team(
    request: web.Request, caller: Caller, body: schemas.TeamCreate
) -> web.Response:
    team = await request.app[ORGANIZATIONS].create_team(
        caller, request.match_info["org"], body.name, body.role, body.external_group
    )
    return json(_team_view(*team), 201)


async def update_team(
    request: web.Request, caller: Caller, body: schemas.TeamUpdate
) -> web.Response:
    team = await request.app[ORGANIZATIONS].update_team(
        caller,
        request.match_info["org"],
        request.match_info["team"],
        body.role,
        body.external_group,
    )
    return json(_team_view(*team))


async def delete_team(request: web.Request, caller: Caller, _: Any) -> web.Response:
    await request.app[ORGANIZATIONS].delete_team(
        caller, request.match_info["org"], request.match_info["team"]
    )
    return web.Response(status=204)


async def add_team_member(request: web.Request, caller: Caller, _: Any) -> web.Response:
    info = request.match_info
    await request.app[ORGANIZATIONS].set_member(
        caller, info["org"], info["team"], info["member"], present=True
    )
    return web.Response(status=204)


async def remove_team_member(request: web.Request, caller: Caller, _: Any) -> web.Response:
    info = request.match_info
    await request.app[ORGANIZATIONS].set_member(
        caller, info["org"], info["team"], info["member"], present=False
    )
    return web.Response(status=204)


async def list_robots(request: web.Request, caller: Caller, _: Any) -> web.Response:
    robots = await request.app[ORGANIZATIONS].robots(caller, request.match_info["namespace"])
    return json([_robot_view(r) for r in robots])


async def create_robot(
    request: web.Request, caller: Caller, body: schemas.RobotCreate
) -> web.Response:
    robot, secret = await request.app[ORGANIZATIONS].create_robot(
        caller, request.match_info["namespace"], body.name, body.expires_at
    )
    return json(
        schemas.RobotSecret(name=robot.name, secret=secret, expires_at=robot.expires_at), 201
    )


async def rotate_robot_secret(request: web.Request, caller: Caller, _: Any) -> web.Response:
    robot, secret = await request.app[ORGANIZATIONS].rotate_robot(
        caller, request.match_info["namespace"], request.match_info["robot"]
    )
    return json(schemas.RobotSecret(name=robot.name, secret=secret, expires_at=robot.expires_at))


async def delete_robot(request: web.Request, caller: Caller, _: Any) -> web.Response:
    await request.app[ORGANIZATIONS].delete_robot(
        caller, request.match_info["namespace"], request.match_info["robot"]
    )
    return web.Response(status=204)
