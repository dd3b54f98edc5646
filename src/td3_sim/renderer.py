"""The front camera: a pinhole camera over a flat textured ground, BGRA like the bridge's rgb_front.

Fast because nearly everything is precomputed:
- GroundMap: the track's ground (asphalt, lane lines, curb, sidewalk, grass) is rasterised ONCE
  per track into a top-down colour map of 0.1 m cells, with a mip pyramid for distant ground;
- Camera rays: per camera (size, fov, pitch) the ground point of every pixel relative to the
  camera, its mip level and its fog weight are fixed; a frame only rotates and translates
  those points, gathers texels and blends in the fog. Sky and distant hills come from the
  per-pixel elevation and the absolute azimuth of each column.
Small images are rendered supersampled and averaged in integers, so that lane lines do not
flicker in an 84x84 frame. Everything is element-wise in a fixed order: the same inputs give
bit-identical images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from td3_sim import track as tr

CELL = 0.1  # metres per ground-map cell at mip level 0
MIP_LEVELS = 6
MAP_MARGIN = 40.0  # metres of grass around the track in the map; beyond it, flat grass
CORRIDOR = tr.CURB_OUTER + tr.SIDEWALK_WIDTH + 1.0  # rasterised half width around the centerline
SPLAT_STEP = 0.04  # metres between supersamples when rasterising the corridor

# Base colours, RGB (converted to BGR below), before lighting.
SURFACE_RGB = {
    tr.GRASS: (88, 126, 56),
    tr.ASPHALT: (70, 70, 74),
    tr.LINE: (228, 228, 222),
    tr.CURB: (178, 176, 170),
    tr.SIDEWALK: (156, 150, 142),
}
SKY_HORIZON_RGB = (208, 222, 236)
SKY_ZENITH_RGB = (92, 142, 214)
HILLS_RGB = (96, 122, 104)
FOG_RGB = (196, 208, 220)


@dataclass(frozen=True)
class CameraSpec:
    width: int = 800
    height: int = 600
    fov_deg: float = 90.0  # horizontal
    pitch_deg: float = 5.0  # downwards
    x: float = 2.0  # mount, metres forward of the vehicle centre
    z: float = 2.0  # metres above the ground
    fog_distance: float = 150.0  # metres for fog weight 1 - 1/e; <= 0 disables fog
    supersample: int = 0  # 0 = automatic (more for small images)

    def factor(self) -> int:
        if self.supersample > 0:
            return self.supersample
        return int(min(4, max(1, math.ceil(320 / max(self.width, 1)))))

    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) like the bridge's CameraInfo: square pixels, centre of the image."""
        fx = self.width / (2.0 * math.tan(math.radians(self.fov_deg) / 2.0))
        return fx, fx, self.width / 2.0, self.height / 2.0


@dataclass(frozen=True)
class Lighting:
    """Per-episode light: a brightness and a colour tint applied to the finished frame."""

    brightness: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB multipliers

    @staticmethod
    def from_seed(seed: int) -> Lighting:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 104729]))
        brightness = float(rng.uniform(0.6, 1.25))
        warm = float(rng.uniform(-0.08, 0.08))
        return Lighting(brightness, (1.0 + warm, 1.0, 1.0 - warm))

    @property
    def neutral(self) -> bool:
        return self.brightness == 1.0 and self.tint == (1.0, 1.0, 1.0)

    def apply(self, bgra: np.ndarray) -> np.ndarray:
        """The frame under this light, in 8-bit fixed point (exact, order-free)."""
        if self.neutral:
            return bgra
        rgb = np.array(self.tint, dtype=np.float64) * self.brightness
        scale = np.rint(np.array([rgb[2], rgb[1], rgb[0], 1.0]) * 256.0).astype(np.uint32)
        lit = (bgra.astype(np.uint32) * scale + 128) >> 8
        return np.minimum(lit, 255).astype(np.uint8)


def _pack_bgra(rgb: np.ndarray) -> np.ndarray:
    """float RGB (..., 3) -> uint32 (...) holding B, G, R, A=255 in memory order."""
    q = np.rint(np.clip(rgb, 0, 255)).astype(np.uint8)
    bgra = np.empty((*q.shape[:-1], 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = q[..., 2], q[..., 1], q[..., 0], 255
    return bgra.view(np.uint32)[..., 0]


class GroundMap:
    """Top-down colour map of one track as a mip pyramid of flat uint32 BGRA textures.

    Each cell near the road gets its exact (s, d) track coordinates: samples laid along the
    centerline land in cells, and the offset from the sample to the cell centre corrects them.
    The colour is then computed analytically, with the fraction of the cell each surface and
    painted line covers (anti-aliased edges without supersampling).
    """

    def __init__(self, track: tr.Track) -> None:
        x0, y0, x1, y1 = track.bounds(MAP_MARGIN)
        align = 1 << (MIP_LEVELS - 1)
        self.cols = math.ceil((x1 - x0) / (CELL * align)) * align
        self.rows = math.ceil((y1 - y0) / (CELL * align)) * align
        self.x0, self.y0 = x0, y0
        rgb = self._rasterise(track)
        _add_texture(rgb, track.seed)
        self.levels: list[np.ndarray] = []
        for level in range(MIP_LEVELS):
            self.levels.append(_pack_bgra(rgb).ravel())
            if level == MIP_LEVELS - 1:
                break
            rgb = (rgb[0::2, 0::2] + rgb[1::2, 0::2] + rgb[0::2, 1::2] + rgb[1::2, 1::2]) * np.float32(0.25)

    def _rasterise(self, track: tr.Track) -> np.ndarray:
        rgb = np.empty((self.rows, self.cols, 3), dtype=np.float32)
        rgb[:] = SURFACE_RGB[tr.GRASS]
        # Sample spacing below a cell also on the outside of the tightest curves.
        s = np.arange(0.0, track.length, 0.06)
        d = np.arange(-CORRIDOR, CORRIDOR + 1e-9, 0.07)
        points, tangent = track.frame_at(s)
        wx = points[:, 0, None] - tangent[:, 1, None] * d[None, :]
        wy = points[:, 1, None] + tangent[:, 0, None] * d[None, :]
        col = np.floor((wx - self.x0) / CELL).astype(np.int64)
        row = np.floor((wy - self.y0) / CELL).astype(np.int64)
        # First-order correction from the sample to the centre of its cell.
        ex = (col + 0.5) * CELL + self.x0 - wx
        ey = (row + 0.5) * CELL + self.y0 - wy
        cell_s = s[:, None] + ex * tangent[:, 0, None] + ey * tangent[:, 1, None]
        cell_d = d[None, :] - ex * tangent[:, 1, None] + ey * tangent[:, 0, None]
        flat = (row * self.cols + col).ravel()
        # One (s, d) per cell (for repeated cells numpy keeps one of the equal-to-first-order values).
        cells, first = np.unique(flat, return_index=True)
        colours = cross_section_rgb(track, cell_s.ravel()[first], cell_d.ravel()[first], CELL)
        rgb.reshape(-1, 3)[cells] = colours
        return rgb


def _coverage(lo: np.ndarray, hi: np.ndarray, a: float, b: float) -> np.ndarray:
    """Fraction of each interval [lo, hi] inside [a, b]."""
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None) / (hi - lo)


def _dash_integral(x: np.ndarray) -> np.ndarray:
    """Painted length of the broken line in [0, x]."""
    return np.floor(x / tr.DASH_PERIOD) * tr.DASH_LENGTH + np.minimum(np.mod(x, tr.DASH_PERIOD), tr.DASH_LENGTH)


def cross_section_rgb(track: tr.Track, s: np.ndarray, d: np.ndarray, size: float) -> np.ndarray:
    """RGB of square cells of side `size` centred at track coordinates (s, d), area-weighted."""
    lo, hi = d - size / 2, d + size / 2
    grass = np.asarray(SURFACE_RGB[tr.GRASS], dtype=np.float64)
    rgb = np.broadcast_to(grass, (len(d), 3)).copy()
    for a, b, kind in track.surfaces():
        cover = _coverage(lo, hi, a, b)[:, None]
        rgb += cover * (np.asarray(SURFACE_RGB[kind], dtype=np.float64) - grass)
    line = np.asarray(SURFACE_RGB[tr.LINE], dtype=np.float64)
    dash = (_dash_integral(s + size / 2) - _dash_integral(s - size / 2)) / size
    for offset, kind in tr.MARKINGS:
        cover = _coverage(lo, hi, offset - tr.LINE_WIDTH / 2, offset + tr.LINE_WIDTH / 2)
        if kind == "broken":
            cover = cover * dash
        rgb = rgb * (1.0 - cover[:, None]) + line * cover[:, None]
    return rgb


def _add_texture(rgb: np.ndarray, seed: int) -> None:
    """Fine grain on every cell and large soft patches (motion and distance cues), in place."""
    rows, cols = rgb.shape[:2]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 15485863]))
    grain = rng.standard_normal((rows, cols), dtype=np.float32)
    coarse = rng.standard_normal((rows // 32 + 2, cols // 32 + 2), dtype=np.float32)
    grain *= 0.05
    grain += 1.0
    grain *= 1.0 + 0.08 * _upsample(coarse, 32, rows, cols)
    rgb *= grain[..., None]
    # The outermost ring is plain grass: lookups beyond the map are clipped onto it.
    edge = np.asarray(SURFACE_RGB[tr.GRASS], dtype=np.float32)
    rgb[:2], rgb[-2:], rgb[:, :2], rgb[:, -2:] = edge, edge, edge, edge


def _upsample(grid: np.ndarray, factor: int, rows: int, cols: int) -> np.ndarray:
    """Separable bilinear upsampling of a coarse grid by an integer factor, cropped to (rows, cols)."""
    t = (np.arange(factor, dtype=np.float32) + 0.5) / factor
    c0 = np.repeat(np.arange(grid.shape[1] - 1), factor)[:cols]
    tc = np.tile(t, grid.shape[1] - 1)[:cols]
    along = grid[:, c0] * (1 - tc) + grid[:, c0 + 1] * tc  # (coarse rows, cols)
    r0 = np.repeat(np.arange(grid.shape[0] - 1), factor)[:rows]
    tr_ = np.tile(t, grid.shape[0] - 1)[:rows, None]
    return along[r0] * (1 - tr_) + along[r0 + 1] * tr_


class _Rays:
    """Per-pixel geometry of one camera at its internal (supersampled) resolution."""

    def __init__(self, cam: CameraSpec) -> None:
        f = cam.factor()
        self.factor = f
        w, h = cam.width * f, cam.height * f
        self.shape = (h, w)
        fx, fy, cx, cy = (v * f for v in cam.intrinsics())
        u = (np.arange(w, dtype=np.float64) + 0.5 - cx) / fx
        v = (np.arange(h, dtype=np.float64) + 0.5 - cy) / fy
        # Camera body frame (x forward, y left, z up) then pitched down by pitch_deg.
        bx = np.ones((h, w))
        by = np.broadcast_to(-u[None, :], (h, w))
        bz = np.broadcast_to(-v[:, None], (h, w))
        p = math.radians(cam.pitch_deg)
        dx = bx * math.cos(p) + bz * math.sin(p)
        dz = -bx * math.sin(p) + bz * math.cos(p)
        dy = by
        norm = np.sqrt(dx * dx + dy * dy + dz * dz)
        self.elevation = np.arcsin(dz / norm)  # rad above the horizon, per pixel
        self.column_azimuth = np.arctan2(dy[0], dx[0])  # rad left of the heading (no roll)

        ground = dz < -1e-6
        t = np.where(ground, cam.z / np.where(ground, -dz, 1.0), np.inf)
        gx = np.where(ground, dx * t, 0.0)  # ground point relative to the camera, vehicle axes
        gy = np.where(ground, dy * t, 0.0)
        distance = np.where(ground, np.sqrt(gx * gx + gy * gy + cam.z * cam.z), np.inf)
        # Texel footprint of a pixel: geometric mean of its extent along rows and columns.
        gu = np.hypot(np.gradient(gx, axis=1), np.gradient(gy, axis=1))
        gv = np.hypot(np.gradient(gx, axis=0), np.gradient(gy, axis=0))
        footprint = np.sqrt(np.where(ground, gu * gv, 1.0))
        level = np.clip(np.floor(np.log2(np.maximum(footprint, 1e-9) / CELL) + 0.5), 0, MIP_LEVELS - 1)
        fog = np.zeros((h, w)) if cam.fog_distance <= 0 else 1.0 - np.exp(-distance / cam.fog_distance)
        fog = np.where(ground, fog, 0.0)

        self.ground_mask = ground
        flat = np.flatnonzero(ground)
        lv = level.ravel()[flat].astype(np.int64)
        order = np.argsort(lv, kind="stable")
        self.pixels = flat[order]  # ground pixels grouped by mip level
        self.gx = gx.ravel()[self.pixels]
        self.gy = gy.ravel()[self.pixels]
        bounds = np.searchsorted(lv[order], np.arange(MIP_LEVELS + 1))
        self.level_slices = [slice(int(bounds[k]), int(bounds[k + 1])) for k in range(MIP_LEVELS)]
        # Fog blend in 8-bit fixed point: out = (texel * (256 - w) + fog * w) >> 8.
        self.fog_w = np.rint(fog.ravel()[self.pixels] * 256.0).astype(np.uint16)[:, None]


class Renderer:
    """Renders BGRA frames of one camera; reusable across tracks and poses."""

    def __init__(self, camera: CameraSpec) -> None:
        self.camera = camera
        self.rays = _Rays(camera)
        sky_t = np.clip(self.rays.elevation / 0.7, 0.0, 1.0) ** 0.8
        horizon, zenith = np.array(SKY_HORIZON_RGB, float), np.array(SKY_ZENITH_RGB, float)
        self._sky = _pack_bgra(horizon + (zenith - horizon) * sky_t[..., None])
        self._hills = _pack_bgra(np.array(HILLS_RGB, float) * 0.55 + np.array(FOG_RGB, float) * 0.45)
        fog = _pack_bgra(np.array(FOG_RGB, float))
        self._fog16 = np.asarray(fog, dtype=np.uint32).reshape(1).view(np.uint8).astype(np.uint16)[None, :]

    def render(self, ground: GroundMap, x: float, y: float, yaw: float) -> np.ndarray:
        """(height, width, 4) uint8 BGRA from a vehicle at (x, y, yaw) in the map frame (unlit)."""
        rays, cam = self.rays, self.camera
        frame = self._sky.copy()

        # Distant hills: a band above the horizon fixed to the world (absolute azimuth).
        azimuth = yaw + rays.column_azimuth
        top = 0.035 + 0.02 * np.sin(3.0 * azimuth + 0.5) + 0.012 * np.sin(7.0 * azimuth + 1.3)
        top = top + 0.006 * np.sin(17.0 * azimuth + 2.1)
        frame[(rays.elevation >= 0.0) & (rays.elevation < top[None, :])] = self._hills

        c, s = math.cos(yaw), math.sin(yaw)
        cam_x, cam_y = x + c * cam.x, y + s * cam.x
        wx = cam_x + c * rays.gx - s * rays.gy
        wy = cam_y + s * rays.gx + c * rays.gy
        texels = np.empty(len(rays.pixels), dtype=np.uint32)
        for k, sl in enumerate(rays.level_slices):
            if sl.stop <= sl.start:
                continue
            cell = CELL * (1 << k)
            cols, rows = ground.cols >> k, ground.rows >> k
            fc = (wx[sl] - ground.x0) / cell - 0.5
            fr = (wy[sl] - ground.y0) / cell - 0.5
            if k == 0 and rays.factor == 1:  # magnified near ground; supersampled frames average anyway
                texels[sl] = _bilinear(ground.levels[0], fc, fr, cols, rows)
            else:
                ci = np.clip(np.rint(fc).astype(np.int64), 0, cols - 1)
                ri = np.clip(np.rint(fr).astype(np.int64), 0, rows - 1)
                texels[sl] = np.take(ground.levels[k], ri * cols + ci)
        channels = texels.view(np.uint8).reshape(-1, 4).astype(np.uint16)
        blended = (channels * (256 - rays.fog_w) + self._fog16 * rays.fog_w) >> 8
        blended[:, 3] = 255
        frame.ravel()[rays.pixels] = blended.astype(np.uint8).view(np.uint32)[:, 0]
        return _downsample(frame.view(np.uint8).reshape(*rays.shape, 4), rays.factor)


def _bilinear(texture: np.ndarray, fc: np.ndarray, fr: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Bilinear lookup in a flat uint32 BGRA texture, 8-bit fixed-point weights."""
    c0 = np.floor(fc)
    r0 = np.floor(fr)
    wc = np.rint((fc - c0) * 256.0).astype(np.uint32)[:, None]
    wr = np.rint((fr - r0) * 256.0).astype(np.uint32)[:, None]
    c0i = np.clip(c0.astype(np.int64), 0, cols - 1)
    r0i = np.clip(r0.astype(np.int64), 0, rows - 1)
    c1i = np.minimum(c0i + 1, cols - 1)
    r1i = np.minimum(r0i + 1, rows - 1)

    def texel(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.take(texture, r * cols + c).view(np.uint8).reshape(-1, 4).astype(np.uint32)

    top = texel(r0i, c0i) * (256 - wc) + texel(r0i, c1i) * wc
    bottom = texel(r1i, c0i) * (256 - wc) + texel(r1i, c1i) * wc
    mixed = (top * (256 - wr) + bottom * wr + (1 << 15)) >> 16
    return mixed.astype(np.uint8).view(np.uint32)[:, 0]


def _downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Integer box filter (rounded): exact and the same everywhere."""
    if factor == 1:
        return image
    n = factor * factor
    acc = np.full((image.shape[0] // factor, image.shape[1] // factor, 4), n // 2, dtype=np.uint32)
    for i in range(factor):
        for j in range(factor):
            acc += image[i::factor, j::factor]
    return (acc // n).astype(np.uint8)
