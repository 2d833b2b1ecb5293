"""Each degradation on real speech (and synthetic signals where a property needs one)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from hireslm.audio import (
    EmptyAudioError,
    NonFiniteAudioError,
    estimate_bandwidth,
    load_audio,
    resample,
)
from hireslm.data.degradations import DEGRADATIONS, colored_noise, simulate_rir
from hireslm.data.degradations._common import fit_length
from hireslm.data.degradations.codecs import MP3_UNTAGGED_DELAY, _mp3_compression_level
from hireslm.data.degradations.filters import FILTER_FAMILIES
from hireslm.data.degradations.reverb import direct_path_index

SR = 48000


def lag_of(reference: np.ndarray, degraded: np.ndarray, max_lag: int = 4000) -> int:
    """Lag (samples) of the cross-correlation peak within +-max_lag; >0: degraded is late."""
    corr = signal.correlate(degraded.mean(0), reference.mean(0), mode="full", method="fft")
    centre = reference.shape[-1] - 1
    return int(np.argmax(corr[centre - max_lag : centre + max_lag + 1])) - max_lag


def snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    residual = degraded.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(residual**2)))


def band_energy(wave: np.ndarray, rate: int, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(wave.shape[-1], 1.0 / rate)
    return float(spectrum[:, (freqs >= low_hz) & (freqs < high_hz)].sum())


def white(seconds: float = 1.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, int(seconds * SR)))).astype(np.float32)


@pytest.fixture(scope="module")
def talkers(librivox_files):
    return [load_audio(path)[0] for path in librivox_files[1:4]]


def cases(talkers) -> dict[str, dict]:
    """One parameter set per degradation, exercising its main path."""
    return {
        "eq": {"n_bands": 3, "max_gain_db": 9.0},
        "reverb": {"rt60_s": 0.3, "max_order": 10},
        "noise": {"snr_db": 5.0, "color": "pink"},
        "babble": {"snr_db": 5.0, "talkers": talkers, "talkers_sample_rate": 16000},
        "lowpass": {"cutoff_hz": 4000.0, "family": "elliptic", "order": 6},
        "resample": {"low_rate": 8000},
        "mp3": {"bitrate_kbps": 32},
        "opus": {"bitrate_kbps": 12.0},
        "vorbis": {"quality": 0.1},
        "clipping": {"threshold": 0.3},
        "packet_loss": {"loss_rate": 0.2, "fade_ms": 2.0},
        "gain": {"gain_db": -6.0},
    }


def test_cases_cover_every_degradation(talkers):
    assert set(cases(talkers)) == set(DEGRADATIONS)


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_keeps_length_and_is_deterministic(name, speech_48k, talkers):
    params = cases(talkers)[name]
    stereo = np.concatenate([speech_48k, 0.5 * speech_48k[:, ::-1]]).astype(np.float32)
    for wave in (speech_48k, stereo):
        before = wave.copy()
        out = DEGRADATIONS[name](wave, SR, np.random.default_rng(3), **params)
        again = DEGRADATIONS[name](wave, SR, np.random.default_rng(3), **params)
        assert out.shape == wave.shape and out.dtype == np.float32
        assert np.isfinite(out).all()
        assert np.array_equal(out, again)
        assert np.array_equal(wave, before)  # inputs are never modified
        assert not np.array_equal(out, wave)


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_tiny_and_multichannel_inputs(name, talkers):
    params = cases(talkers)[name]
    for channels, length in ((1, 1), (1, 7), (3, 300)):
        wave = 0.1 * np.random.default_rng(1).standard_normal((channels, length))
        out = DEGRADATIONS[name](wave.astype(np.float32), SR, np.random.default_rng(0), **params)
        assert out.shape == (channels, length) and np.isfinite(out).all()


@pytest.mark.parametrize("name", ["noise", "packet_loss", "reverb", "eq", "babble"])
def test_random_degradations_follow_the_seed(name, speech_48k, talkers):
    params = cases(talkers)[name]
    a = DEGRADATIONS[name](speech_48k, SR, np.random.default_rng(1), **params)
    b = DEGRADATIONS[name](speech_48k, SR, np.random.default_rng(2), **params)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("color", ["white", "pink", "brown", "blue", 0.5])
@pytest.mark.parametrize("target", [-5.0, 5.0, 20.0])
def test_synthetic_noise_snr(color, target, speech_48k):
    out = DEGRADATIONS["noise"](speech_48k, SR, np.random.default_rng(0), snr_db=target,
                                color=color)
    assert abs(snr_db(speech_48k, out) - target) < 0.5


def test_noise_colors_have_their_slope():
    def slope(alpha: float) -> float:
        noise = colored_noise(1, SR * 4, SR, np.random.default_rng(0), alpha)
        low = band_energy(noise, SR, 400, 800) / 400
        high = band_energy(noise, SR, 6400, 12800) / 6400
        return 10 * np.log10(low / high) / 4  # dB per octave over four octaves

    assert abs(slope(0.0)) < 0.5
    assert abs(slope(1.0) - 3.0) < 0.5
    assert abs(slope(2.0) - 6.0) < 0.5


@pytest.mark.parametrize("seconds", [0.4, 3.0])  # shorter than the speech: looped
def test_recorded_noise_snr_and_resampling(seconds, speech_48k, librivox_files):
    noise_wave, noise_rate = load_audio(librivox_files[2])
    noise_wave = noise_wave[:, : int(seconds * noise_rate)]
    for target in (0.0, 10.0):
        out = DEGRADATIONS["noise"](speech_48k, SR, np.random.default_rng(5), snr_db=target,
                                    noise=noise_wave, noise_sample_rate=noise_rate)
        assert out.shape == speech_48k.shape
        assert abs(snr_db(speech_48k, out) - target) < 0.5
    # Different seeds crop the noise at different offsets.
    other = DEGRADATIONS["noise"](speech_48k, SR, np.random.default_rng(6), snr_db=10.0,
                                  noise=noise_wave, noise_sample_rate=noise_rate)
    assert not np.array_equal(out, other)


def test_noise_crops_have_no_resampling_edges():
    # A constant source: any fade-in/out of the resampler at the crop's edges would show.
    constant = np.full((1, 16000), 0.5, dtype=np.float32)
    for length in (4800, 96000):  # a crop, and more than the source: looped
        piece = fit_length(constant, 16000, length, SR, np.random.default_rng(0))
        assert piece.shape == (1, length)
        np.testing.assert_allclose(piece, 0.5, atol=1e-3)


def test_noise_with_silent_stretches_redraws_the_crop(speech_48k, librivox_files):
    # Half digital silence: some crops land in it; they are redrawn and the SNR still holds.
    recorded, rate = load_audio(librivox_files[2])
    recorded = recorded[:, : rate // 2]
    gappy = np.concatenate([recorded, np.zeros((1, 4 * rate), dtype=np.float32)], axis=1)
    for seed in range(8):
        out = DEGRADATIONS["noise"](speech_48k[:, : SR // 4], SR, np.random.default_rng(seed),
                                    snr_db=10.0, noise=gappy, noise_sample_rate=rate)
        assert abs(snr_db(speech_48k[:, : SR // 4], out) - 10.0) < 0.5


def test_all_silent_noise_falls_back_to_synthetic(speech_48k):
    out = DEGRADATIONS["noise"](speech_48k, SR, np.random.default_rng(0), snr_db=5.0,
                                noise=np.zeros((1, SR), dtype=np.float32), color="pink")
    assert abs(snr_db(speech_48k, out) - 5.0) < 0.5


def test_babble_snr(speech_48k, talkers):
    out = DEGRADATIONS["babble"](speech_48k, SR, np.random.default_rng(0), snr_db=3.0,
                                 talkers=talkers, talkers_sample_rate=16000)
    assert abs(snr_db(speech_48k, out) - 3.0) < 0.5


def test_noise_on_silence_leaves_silence():
    silent = np.zeros((1, SR), dtype=np.float32)
    out = DEGRADATIONS["noise"](silent, SR, np.random.default_rng(0), snr_db=10.0)
    assert not out.any()


@pytest.mark.parametrize("family", sorted(FILTER_FAMILIES))
@pytest.mark.parametrize("order", [2, 4, 8, 12])
@pytest.mark.parametrize("cutoff", [2000.0, 7000.0, 20000.0])
def test_lowpass_removes_the_band_above_cutoff(family, order, cutoff):
    wave = white(1.0)
    out = DEGRADATIONS["lowpass"](wave, SR, np.random.default_rng(0), cutoff_hz=cutoff,
                                  family=family, order=order)
    drop = 10 * np.log10(band_energy(wave, SR, cutoff, SR / 2) /
                         band_energy(out, SR, cutoff, SR / 2))
    assert drop >= 40.0
    assert lag_of(wave, out) == 0  # zero-phase
    # The low band survives: at most 6 dB lost well below the edge.
    kept = band_energy(out, SR, 50, cutoff / 8) / band_energy(wave, SR, 50, cutoff / 8)
    assert 10 * np.log10(kept) > -6.0


@pytest.mark.parametrize("family", sorted(FILTER_FAMILIES))
def test_lowpass_on_speech_matches_the_bandwidth_estimate(family, speech_48k):
    out = DEGRADATIONS["lowpass"](speech_48k, SR, np.random.default_rng(0), cutoff_hz=5000.0,
                                  family=family, order=8)
    assert estimate_bandwidth(out, SR) <= 5000.0 * 1.05
    assert estimate_bandwidth(speech_48k, SR) > 15000.0


@pytest.mark.parametrize("low_rate", [8000, 16000, 22050])
def test_resample_through_a_lower_rate(low_rate):
    wave = white(1.0)
    out = DEGRADATIONS["resample"](wave, SR, np.random.default_rng(0), low_rate=low_rate)
    edge = low_rate / 2
    drop = band_energy(wave, SR, edge, SR / 2) / max(band_energy(out, SR, edge, SR / 2), 1e-30)
    assert 10 * np.log10(drop) >= 40.0
    assert lag_of(wave, out) == 0
    kept = band_energy(out, SR, 100, 0.8 * edge) / band_energy(wave, SR, 100, 0.8 * edge)
    assert abs(10 * np.log10(kept)) < 0.5


def test_clipping_caps_the_peak(speech_48k):
    peak = float(np.abs(speech_48k).max())
    rng = np.random.default_rng(0)
    hard = DEGRADATIONS["clipping"](speech_48k, SR, rng, threshold=0.25)
    assert np.isclose(np.abs(hard).max(), 0.25 * peak, rtol=1e-5)
    assert np.mean(np.abs(hard) >= 0.25 * peak * 0.9999) > 0.001  # really clipped, flat tops
    soft = DEGRADATIONS["clipping"](speech_48k, SR, rng, threshold=0.25, soft=True)
    assert np.abs(soft).max() <= 0.25 * peak
    dbfs = DEGRADATIONS["clipping"](speech_48k, SR, rng, threshold_dbfs=-20.0)
    assert np.abs(dbfs).max() <= 10 ** (-20 / 20) + 1e-7
    with pytest.raises(ValueError, match="exactly one"):
        DEGRADATIONS["clipping"](speech_48k, SR, rng, threshold=0.5, threshold_dbfs=-6.0)


def test_gain_is_exact(speech_48k):
    out = DEGRADATIONS["gain"](speech_48k, SR, np.random.default_rng(0), gain_db=-6.0)
    np.testing.assert_allclose(out, speech_48k * 10 ** (-6 / 20), rtol=1e-6)


def test_eq_band_gain_and_zero_phase():
    wave = white(4.0)
    band = {"type": "peaking", "freq_hz": 1000.0, "gain_db": 9.0, "q": 2.0}
    out = DEGRADATIONS["eq"](wave, SR, np.random.default_rng(0), bands=[band])
    at_centre = band_energy(out, SR, 980, 1020) / band_energy(wave, SR, 980, 1020)
    assert abs(10 * np.log10(at_centre) - 9.0) < 1.0
    far = band_energy(out, SR, 8000, 16000) / band_energy(wave, SR, 8000, 16000)
    assert abs(10 * np.log10(far)) < 0.5
    assert lag_of(wave, out) == 0
    shelf = {"type": "highshelf", "freq_hz": 4000.0, "gain_db": -12.0, "q": 0.7}
    out = DEGRADATIONS["eq"](wave, SR, np.random.default_rng(0), bands=[shelf])
    top = band_energy(out, SR, 12000, 20000) / band_energy(wave, SR, 12000, 20000)
    assert abs(10 * np.log10(top) + 12.0) < 1.0


@pytest.mark.parametrize("fade_ms", [0.0, 2.0])
def test_packet_loss_drops_whole_frames(fade_ms):
    wave = white(4.0) + 0.5  # offset: no sample of the clean is zero
    out = DEGRADATIONS["packet_loss"](wave, SR, np.random.default_rng(0), loss_rate=0.25,
                                      frame_ms=20.0, fade_ms=fade_ms)
    frame = SR // 50
    frames = out[0].reshape(-1, frame)
    lost = ~frames.any(axis=1)
    assert 0.15 < lost.mean() < 0.35
    kept = wave[0].reshape(-1, frame)[~lost]
    if fade_ms == 0.0:
        assert np.array_equal(frames[~lost], kept)
    else:
        fade = int(fade_ms * SR / 1000)
        # A kept frame right after a gap starts from silence and reaches full level.
        after = np.nonzero(lost[:-1] & ~lost[1:])[0] + 1
        assert after.size > 0
        start = after[0] * frame
        ramp = out[0, start : start + fade + 1] / wave[0, start : start + fade + 1]
        np.testing.assert_allclose(ramp, np.minimum(1.0, np.arange(1, fade + 2) / fade),
                                   rtol=1e-5)


def test_reverb_with_a_measured_style_rir_stays_aligned(speech_48k):
    rng = np.random.default_rng(0)
    rir = np.zeros(SR // 2, dtype=np.float32)
    rir[300] = 1.0  # direct path after 300 samples of flight
    tail = np.arange(rir.size - 400)
    # A diffuse tail at about 0 dB direct-to-reverberant ratio.
    rir[400:] = 0.02 * rng.standard_normal(tail.size) * np.exp(-tail / (0.05 * SR))
    out = DEGRADATIONS["reverb"](speech_48k, SR, rng, rir=rir)
    assert out.shape == speech_48k.shape
    assert lag_of(speech_48k, out) == 0
    assert abs(10 * np.log10(np.mean(out**2) / np.mean(speech_48k**2))) < 0.01
    # The same RIR stored at 16 kHz is resampled to the wave's rate.
    low = DEGRADATIONS["reverb"](speech_48k, SR, rng, rir=rir[::3].copy(), rir_sample_rate=16000)
    assert low.shape == speech_48k.shape and lag_of(speech_48k, low) == 0


def test_simulated_room_direct_path_and_rt60():
    room = simulate_rir(SR, np.random.default_rng(4), rt60_s=0.4, max_order=12)
    distance = np.linalg.norm(np.subtract(room.source_m, room.mic_m))
    flight = distance / 343.0 * SR
    # pyroomacoustics centres its 81-tap fractional-delay filter: +40 samples.
    assert abs(direct_path_index(room.rir) - (flight + 40)) <= 2
    assert 0.05 < room.rt60_measured_s < 1.5
    # A dry target in a big room: the room is shrunk until Sabine allows it.
    dry = simulate_rir(SR, np.random.default_rng(4), rt60_s=0.12, max_order=8)
    assert dry.rt60_measured_s < 0.3
    with pytest.raises(ValueError, match="cannot be as dry"):
        simulate_rir(SR, np.random.default_rng(0), rt60_s=0.05, room_dims_m=[20.0, 15.0, 8.0])


def test_simulated_rt60_overshoot_and_its_correction():
    plain = [simulate_rir(SR, np.random.default_rng(seed), rt60_s=0.6, max_order=40,
                          match_rt60=False) for seed in range(4)]
    matched = [simulate_rir(SR, np.random.default_rng(seed), rt60_s=0.6, max_order=40)
               for seed in range(4)]
    # inverse_sabine alone overshoots ...
    assert np.median([room.rt60_measured_s for room in plain]) > 0.6 * 1.1
    # ... one corrective simulation of the same room lands near the target.
    for before, after in zip(plain, matched, strict=True):
        assert after.room_dims_m == before.room_dims_m and after.mic_m == before.mic_m
        assert abs(after.rt60_measured_s - 0.6) / 0.6 < 0.1
        assert abs(after.rt60_measured_s - 0.6) <= abs(before.rt60_measured_s - 0.6)


CODEC_CASES = [
    ("mp3", {"bitrate_kbps": 128}),
    ("mp3", {"bitrate_kbps": 64}),
    ("mp3", {"bitrate_kbps": 32}),  # untagged: the known delay is removed
    ("mp3", {"bitrate_kbps": 16}),  # MPEG-2 at 24 kHz
    ("mp3", {"bitrate_kbps": 8, "codec_sample_rate": 8000}),
    ("opus", {"bitrate_kbps": 6.0}),
    ("opus", {"bitrate_kbps": 16.0}),
    ("opus", {"bitrate_kbps": 32.0}),
    ("opus", {"bitrate_kbps": 64.0}),
    ("vorbis", {"quality": 0.0}),
    ("vorbis", {"quality": 0.3, "codec_sample_rate": 16000}),
]


@pytest.mark.parametrize(("name", "params"), CODEC_CASES)
@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_codec_output_is_aligned(name, params, rate, speech_48k):
    wave = resample(speech_48k, SR, rate)
    if params.get("codec_sample_rate", 0) > rate:
        pytest.skip("codec rate above the input rate")
    out = DEGRADATIONS[name](wave, rate, np.random.default_rng(0), **params)
    assert out.shape == wave.shape
    assert lag_of(wave, out) == 0
    # Aligned and still the same speech: strongly correlated at lag 0.
    corr = np.corrcoef(wave[0], out[0])[0, 1]
    assert corr > 0.6


def test_mp3_delay_without_gapless_tag_is_measured():
    """The raw fact the MP3 compensation relies on (libsndfile 1.2.2, LAME, mpg123)."""
    wave = white(1.0)[0]
    for kbps, expected in ((64, 0), (32, MP3_UNTAGGED_DELAY)):
        buffer = io.BytesIO()
        sf.write(buffer, wave, SR, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=_mp3_compression_level(kbps, SR), bitrate_mode="CONSTANT")
        encoded_kbps = buffer.tell() * 8 / 1.0 / 1000
        buffer.seek(0)
        decoded, _ = sf.read(buffer, dtype="float32")
        assert abs(encoded_kbps - kbps) / kbps < 0.15  # the asked bitrate is the one used
        assert lag_of(wave[None], decoded[None, : wave.size], 2000) == expected


def test_bad_input_raises_clear_errors(speech_48k):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(C, N\)"):
        DEGRADATIONS["gain"](speech_48k[0], SR, rng, gain_db=1.0)
    with pytest.raises(EmptyAudioError):
        DEGRADATIONS["gain"](np.zeros((1, 0), np.float32), SR, rng, gain_db=1.0)
    nan = speech_48k.copy()
    nan[0, 10] = np.nan
    with pytest.raises(NonFiniteAudioError):
        DEGRADATIONS["noise"](nan, SR, rng, snr_db=1.0)
    with pytest.raises(ValueError, match="unknown filter family"):
        DEGRADATIONS["lowpass"](speech_48k, SR, rng, cutoff_hz=4000.0, family="fir")
    with pytest.raises(ValueError, match="cutoff_hz"):
        DEGRADATIONS["lowpass"](speech_48k, SR, rng, cutoff_hz=30000.0)
    with pytest.raises(ValueError, match="not available"):
        DEGRADATIONS["mp3"](speech_48k, SR, rng, bitrate_kbps=8, codec_sample_rate=48000)
    with pytest.raises(ValueError, match="codec_sample_rate"):
        DEGRADATIONS["opus"](speech_48k, SR, rng, bitrate_kbps=8, codec_sample_rate=44100)
    with pytest.raises(ValueError, match="unknown noise color"):
        DEGRADATIONS["noise"](speech_48k, SR, rng, snr_db=1.0, color="purple")
