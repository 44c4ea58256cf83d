"""HTTP endpoints of alert rules: listed by every role, added and removed by operators and admins."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import OPERATOR, principal_of
from api.pool import Pool
from api.problems import bad_request, not_found
from api.rules.schemas import Rule, RulePage
from api.rules.services import add_rule, list_rules, read_rule, remove_rule
from models.rule_store import UnknownChannelError, UnknownFenceError
from models.rules import RuleSpec, rule_problem


class RuleController(Controller):
    """`/rules`: threshold, presence and geofence alert rules; a change takes effect in the engine without a restart."""

    path = "/rules"
    tags = ("rules",)

    @get("/", summary="List rules")
    async def page(self, pool: NamedDependency[Pool]) -> RulePage:
        """Every active rule, by id."""
        return RulePage(items=await list_rules(pool))

    @get("/{rule_id:int}", summary="A rule")
    async def details(self, pool: NamedDependency[Pool], rule_id: FromPath[int]) -> Rule:
        """The rule; 404 when there is none or it was removed."""
        rule = await read_rule(pool, rule_id)
        if rule is None:
            raise not_found(f"no rule {rule_id}")
        return rule

    @post("/", summary="Add a rule", status_code=HTTP_201_CREATED, opt=OPERATOR)
    async def add(self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], data: JSONBody[RuleSpec]) -> Rule:
        """Add a rule; 400 with the reason for an unknown metric, a duration out of range or limits that
        do not fit the operator or the metric's range, an unknown notification channel or geofence."""
        problem = rule_problem(data)
        if problem is not None:
            raise bad_request(problem)
        try:
            return await add_rule(pool, data, principal_of(request).name)
        except (UnknownChannelError, UnknownFenceError) as exc:
            raise bad_request(str(exc)) from None

    @delete("/{rule_id:int}", summary="Remove a rule", status_code=HTTP_204_NO_CONTENT, opt=OPERATOR)
    async def remove(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], rule_id: FromPath[int]
    ) -> None:
        """Remove the rule; its open alerts are cleared (reason `rule_removed`). 404 when there is none."""
        if not await remove_rule(pool, rule_id, principal_of(request).name):
            raise not_found(f"no rule {rule_id}")
