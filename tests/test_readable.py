from attn.readable import ms, nbytes, si


def test_bytes_read_in_binary_units_without_exponents():
    assert nbytes(None) == "—"
    assert nbytes(12) == "12 B"
    assert nbytes(1536) == "1.5 KiB"
    assert nbytes(3 * 2**30) == "3 GiB"
    assert nbytes(455 * 2**40) == "455 TiB"
    # a spec refused as absurd still reads as a number of TiB
    assert nbytes(5821.4 * 2**40) == "5,821 TiB"


def test_times_and_rates():
    assert ms(0.0237) == "23.7 µs" and ms(12.345) == "12.35 ms" and ms(None) == "—"
    assert si(2.5e12, "FLOP/s") == "2.5 TFLOP/s" and si(12, "B") == "12 B"
