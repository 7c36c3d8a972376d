"""Frame bytes, wire dtypes and request validation against docs/protocol.md."""

import json
import math
import struct
import unittest

import numpy as np

from loupe_server import protocol
from loupe_server.protocol import ModelLimits, RequestError, parse_generate_request

from support import parse_body, vector_b64

LIMITS = ModelLimits(num_layers=4, d_in=8, default_layer=2, vocab_size=512)


class FrameBytesTest(unittest.TestCase):
    def test_preamble(self):
        self.assertEqual(protocol.PREAMBLE, bytes.fromhex("4c4f55504501 0000".replace(" ", "")))

    def test_worked_example_token_frame(self):
        # docs/protocol.md "Worked example": d_in 4, f16, token 9707 "Hi" at position 0.
        expected = bytes.fromhex(
            "1d000000"
            "02"
            "00000000" "eb250000" "00" "00" "0200" "04000000"
            "48690000"
            "003c00c000000038"
        )
        activation = np.array([1.0, -2.0, 0.0, 0.5])
        frame = protocol.token_frame(0, 9707, protocol.PHASE_PROMPT, False, b"Hi", activation, "f16")
        self.assertEqual(frame, expected)

    def test_token_frame_sizes_for_every_padding_and_dtype(self):
        for dtype, size in (("f32", 4), ("f16", 2), ("bf16", 2)):
            for text_len in range(6):
                text = b"x" * text_len
                frame = protocol.token_frame(7, 3, 1, True, text, np.arange(5, dtype=np.float32), dtype)
                (length,) = struct.unpack_from("<I", frame)
                padded = (text_len + 3) // 4 * 4
                self.assertEqual(length, 1 + 16 + padded + 5 * size)
                self.assertEqual(len(frame), 4 + length)
                self.assertEqual(frame[4], 2)
                self.assertEqual(frame[4 + 1 + 9], 1, "flags bit 0 = steered")
                self.assertEqual(frame[4 + 1 + 8], 1, "phase thinking")

    def test_heartbeat_end_error_frames(self):
        self.assertEqual(protocol.heartbeat_frame(), bytes.fromhex("0100000004"))
        end = protocol.end_frame("eos", 14, 3, 250)
        self.assertEqual(end[4], 5)
        self.assertEqual(
            json.loads(end[5:]), {"reason": "eos", "prompt_tokens": 14, "generated_tokens": 3, "elapsed_ms": 250}
        )
        self.assertEqual(struct.unpack_from("<I", end)[0], len(end) - 4)
        error = protocol.error_frame("generation_failed", "boom", False)
        self.assertEqual(error[4], 3)
        self.assertEqual(json.loads(error[5:]), {"code": "generation_failed", "message": "boom", "retryable": False})

    def test_whole_body_parses_with_independent_parser(self):
        header = protocol.json_frame(protocol.FRAME_HEADER, {"d_in": 3, "dtype": "bf16", "protocol": "loupe-stream"})
        body = (
            protocol.PREAMBLE
            + header
            + protocol.token_frame(0, 1, 0, False, "é".encode(), np.array([1.0, 2.0, 3.0]), "bf16")
            + protocol.heartbeat_frame()
            + protocol.end_frame("max_tokens", 1, 0, 1)
        )
        stream = parse_body(body)
        self.assertEqual(stream.order, [1, 2, 4, 5])
        self.assertEqual(stream.tokens[0]["text"].decode(), "é")
        np.testing.assert_array_equal(stream.tokens[0]["activation"], [1.0, 2.0, 3.0])

    def test_oversized_frame_refused(self):
        with self.assertRaises(ValueError):
            protocol.frame(2, b"\0" * protocol.MAX_FRAME_LENGTH)


def bf16_reference(x: float) -> int:
    """Nearest bfloat16 (ties to even) by exact comparison of the two neighbours."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    lo = bits >> 16
    candidates = []
    for c in (lo, lo + 1):
        value = struct.unpack("<f", struct.pack("<I", (c << 16) & 0xFFFFFFFF))[0] if c <= 0xFFFF else math.inf
        candidates.append((abs(value - x), c & 1, c))
    # smaller error wins; on a tie the even pattern (low bit 0)
    return min(candidates)[2]


class DtypeTest(unittest.TestCase):
    def test_bf16_rounding_cases(self):
        cases = {
            1.0: 0x3F80,
            -0.0: 0x8000,
            struct.unpack("<f", struct.pack("<I", 0x3F808000))[0]: 0x3F80,  # tie, even stays
            struct.unpack("<f", struct.pack("<I", 0x3F818000))[0]: 0x3F82,  # tie, odd rounds up
            struct.unpack("<f", struct.pack("<I", 0x3F808001))[0]: 0x3F81,  # just above the tie
            struct.unpack("<f", struct.pack("<I", 0x7F7FFFFF))[0]: 0x7F80,  # overflows to +inf
            math.inf: 0x7F80,
            -math.inf: 0xFF80,
        }
        for value, expected in cases.items():
            got = int(protocol.f32_to_bf16_bits(np.array([value], dtype=np.float32))[0])
            self.assertEqual(got, expected, f"{value!r}: {got:#06x} != {expected:#06x}")
        nan = int(protocol.f32_to_bf16_bits(np.array([math.nan], dtype=np.float32))[0])
        self.assertEqual(nan & 0x7F80, 0x7F80)
        self.assertNotEqual(nan & 0x007F, 0)

    def test_bf16_matches_exact_reference_on_random_values(self):
        rng = np.random.default_rng(1)
        values = np.concatenate(
            [rng.standard_normal(2000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 2000)]
        ).astype(np.float32)
        got = protocol.f32_to_bf16_bits(values)
        for value, bits in zip(values.tolist(), got.tolist()):
            self.assertEqual(bits, bf16_reference(value), value)

    def test_encode_activation_dtypes(self):
        values = np.array([1.0, -2.5, 65504.0, 1e-8, 0.1], dtype=np.float32)
        self.assertEqual(protocol.encode_activation(values, "f32"), struct.pack("<5f", *values.tolist()))
        self.assertEqual(protocol.encode_activation(values, "f16"), struct.pack("<5e", *values.tolist()))
        bf16 = protocol.encode_activation(values, "bf16")
        self.assertEqual(list(struct.unpack("<5H", bf16)), [bf16_reference(v) for v in values.tolist()])
        with self.assertRaises(ValueError):
            protocol.encode_activation(values, "f64")


def body(**fields):
    base = {"prompt": "hi"}
    base.update(fields)
    return json.dumps(base).encode()


class RequestValidationTest(unittest.TestCase):
    def assertRejected(self, raw, code, *fragments):
        with self.assertRaises(RequestError) as ctx:
            parse_generate_request(raw, LIMITS)
        self.assertEqual(ctx.exception.code, code, ctx.exception.message)
        self.assertEqual(ctx.exception.status, 400)
        for fragment in fragments:
            self.assertIn(fragment, ctx.exception.message)

    def test_defaults_and_unknown_fields(self):
        request = parse_generate_request(body(some_future_field={"x": 1}), LIMITS)
        self.assertEqual(request.prompt, "hi")
        self.assertEqual((request.max_tokens, request.temperature, request.top_p, request.seed), (256, 0.0, 1.0, 0))
        self.assertEqual((request.layer, request.site, request.dtype), (2, "resid_post", "f32"))
        self.assertEqual(request.steering, ())
        self.assertIsNone(request.resume)

    def test_full_spec_example_parses(self):
        vector = vector_b64(np.arange(8))
        raw = json.dumps(
            {
                "messages": [{"role": "user", "content": "What is 7 * 8?"}],
                "prompt": None,
                "max_tokens": 256,
                "temperature": 0,
                "top_p": 1.0,
                "seed": 0,
                "hook": {"layer": 3, "site": "resid_post"},
                "dtype": "bf16",
                "steering": [
                    {"vector": vector, "strength": 4.0, "start": "after-prefix", "mode": "add"},
                    {"vector": vector, "strength": 1.0, "start": 12, "mode": "clamp-projection", "target": 3.5},
                ],
                "resume": {"position": 57, "generated": [1, 2, 3]},
                "stop_at_think_end": False,
            }
        ).encode()
        request = parse_generate_request(raw, LIMITS)
        self.assertEqual(request.messages, (("user", "What is 7 * 8?"),))
        self.assertEqual(request.layer, 3)
        self.assertEqual(request.steering[0].start, "after-prefix")
        self.assertEqual(request.steering[1].target, 3.5)
        np.testing.assert_array_equal(request.steering[0].vector, np.arange(8, dtype=np.float32))
        self.assertEqual(request.resume.generated, (1, 2, 3))

    def test_bad_json(self):
        self.assertRejected(b"{", "bad_json")
        self.assertRejected(b'{"prompt": "x", "temperature": NaN}', "bad_json", "NaN")
        self.assertRejected(b"\xff", "bad_json")
        self.assertRejected(b"[1]", "bad_request")

    def test_input_choice(self):
        self.assertRejected(json.dumps({}).encode(), "bad_request", "neither")
        self.assertRejected(body(messages=[{"role": "user", "content": "x"}]), "bad_request", "both")
        self.assertRejected(json.dumps({"messages": []}).encode(), "bad_request")
        self.assertRejected(json.dumps({"messages": [{"role": "user", "content": [1]}]}).encode(), "bad_request")
        self.assertRejected(json.dumps({"prompt": ""}).encode(), "bad_request")

    def test_numbers(self):
        self.assertRejected(body(max_tokens=-1), "bad_request", "max_tokens")
        self.assertRejected(body(max_tokens=True), "bad_request")
        self.assertRejected(body(max_tokens=2.5), "bad_request")
        self.assertRejected(body(temperature=-0.1), "bad_request")
        self.assertRejected(body(top_p=0), "bad_request", "top_p")
        self.assertRejected(body(top_p=1.5), "bad_request")
        self.assertRejected(body(seed=-3), "bad_request")

    def test_hook_and_dtype(self):
        self.assertRejected(body(hook={"layer": 4}), "unknown_layer", "0..3")
        self.assertRejected(body(hook={"layer": 1, "site": "attn_out"}), "unsupported_site")
        self.assertRejected(body(hook=5), "bad_request")
        self.assertRejected(body(dtype="f64"), "bad_dtype")

    def test_steering_entries(self):
        good = vector_b64(np.ones(8))
        self.assertRejected(body(steering={"vector": good}), "bad_steering")
        self.assertRejected(body(steering=[{"vector": vector_b64(np.ones(7))}]), "bad_vector", "d_in is 8", "32 bytes")
        self.assertRejected(body(steering=[{"vector": "not base64!"}]), "bad_vector")
        self.assertRejected(
            body(steering=[{"vector": vector_b64(np.array([np.nan] + [0] * 7))}]), "bad_vector", "NaN"
        )
        self.assertRejected(body(steering=[{"vector": good, "mode": "multiply"}]), "bad_steering")
        self.assertRejected(body(steering=[{"vector": good, "mode": "clamp-projection"}]), "bad_steering", "target")
        self.assertRejected(
            body(steering=[{"vector": vector_b64(np.zeros(8)), "mode": "clamp-projection", "target": 1}]),
            "bad_vector",
            "zero",
        )
        self.assertRejected(body(steering=[{"vector": good, "start": "later"}]), "bad_steering", "after-prefix")
        self.assertRejected(body(steering=[{"vector": good, "start": -1}]), "bad_steering")
        self.assertRejected(body(steering=[{"vector": good, "strength": "big"}]), "bad_request")
        self.assertRejected(body(steering=[{"vector": good}] * 65), "bad_steering", "64")

    def test_resume(self):
        self.assertRejected(body(resume=[1]), "bad_resume")
        self.assertRejected(body(resume={"generated": []}), "bad_request", "resume.position")
        self.assertRejected(body(resume={"position": 3, "generated": [512]}), "bad_resume", "0..511")
        self.assertRejected(body(resume={"position": 3, "generated": "abc"}), "bad_resume")


if __name__ == "__main__":
    unittest.main()
