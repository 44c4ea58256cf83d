"""HTTP endpoints of firmware rollouts: started and stopped by operators and admins, read by every role
(docs/ota.md#rollouts)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from api.auth import OPERATOR, principal_of
from api.firmware.links import FirmwareBackend
from api.firmware.services import read_image
from api.pool import Pool
from api.problems import ConflictException, bad_request, conflict, not_found
from api.rollouts.schemas import Rollout, RolloutPost
from api.rollouts.services import NoDevices, list_rollouts, read_rollout, start_rollout, stop_rollout


class RolloutController(Controller):
    """`/rollouts`: a firmware image to a device group in two waves."""

    path = "/rollouts"
    tags = ("firmware",)

    @post("/", summary="Start a rollout", status_code=HTTP_201_CREATED, opt=OPERATOR)
    async def start(
        self,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        firmware: NamedDependency[FirmwareBackend],
        data: JSONBody[RolloutPost],
    ) -> Rollout:
        """Update the group's devices of the image's kind: the first wave (`first_wave_pct` of them, at
        least one) at once, the rest when the first wave has ended with no more than
        `failure_threshold_pct` of its updates failed; otherwise the rollout stops by itself. Devices that
        already run the version are counted as such and sent nothing."""
        image = await read_image(pool, data.image_id)
        if image is None:
            raise bad_request(f"no firmware image {data.image_id}")
        base = firmware.public_url or str(request.base_url)
        made = await start_rollout(pool, firmware, image, data, who=principal_of(request).name, link_base=base)
        if isinstance(made, NoDevices):
            raise bad_request(f"group {made.group!r} has no enabled device of kind {made.kind!r}")
        return await _rollout_or_404(pool, made)

    @get("/", summary="Rollouts")
    async def page(self, pool: NamedDependency[Pool]) -> list[Rollout]:
        """The newest 200 rollouts, with their waves."""
        return await list_rollouts(pool)

    @get("/{rollout_id:int}", summary="A rollout")
    async def details(self, pool: NamedDependency[Pool], rollout_id: FromPath[int]) -> Rollout:
        """The rollout with where each wave's devices are."""
        return await _rollout_or_404(pool, rollout_id)

    @post(
        "/{rollout_id:int}/stop",
        summary="Stop a rollout",
        status_code=HTTP_200_OK,
        opt=OPERATOR,
        raises=[ConflictException],
    )
    async def stop(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], rollout_id: FromPath[int]
    ) -> Rollout:
        """Stop a running rollout: no further wave starts; updates already sent go on. 409 when it is not running."""
        done = await stop_rollout(pool, rollout_id, principal_of(request).name)
        if done is False:
            raise not_found(f"no rollout {rollout_id}")
        if isinstance(done, str):
            raise conflict(f"rollout {rollout_id} is {done}: only a running rollout can be stopped")
        return await _rollout_or_404(pool, rollout_id)


async def _rollout_or_404(pool: Pool, rollout_id: int) -> Rollout:
    rollout = await read_rollout(pool, rollout_id)
    if rollout is None:
        raise not_found(f"no rollout {rollout_id}")
    return rollout
