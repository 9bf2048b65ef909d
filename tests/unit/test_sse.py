import pytest

from tracker.driver.sse import ProtocolError, completion_tokens_of, parse_data_line


def test_openai_completion_chunk_is_content():
    chunk = parse_data_line('data: {"choices": [{"index": 0, "text": " tok"}]}')
    assert chunk is not None and chunk.content and not chunk.done


def test_chat_role_chunk_is_not_content_but_delta_is():
    role = parse_data_line('data: {"choices": [{"delta": {"role": "assistant"}}]}')
    text = parse_data_line('data: {"choices": [{"delta": {"content": "Hi"}}]}')
    assert role is not None and not role.content
    assert text is not None and text.content


def test_usage_chunk_and_done():
    usage = parse_data_line('data: {"choices": [], "usage": {"completion_tokens": 17}}')
    assert usage is not None and not usage.content and usage.completion_tokens == 17
    done = parse_data_line("data: [DONE]")
    assert done is not None and done.done


def test_non_data_lines_are_ignored_and_generic_sse_counts():
    assert parse_data_line(": keep-alive") is None
    assert parse_data_line("event: token") is None
    generic = parse_data_line("data: hello")
    assert generic is not None and generic.content


def test_malformed_json_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        parse_data_line('data: {"choices": [')


def test_completion_tokens_of_bodies():
    assert completion_tokens_of({"usage": {"completion_tokens": 9}}) == 9
    assert completion_tokens_of({"output_tokens": 4}) == 4
    assert completion_tokens_of([1, 2]) is None
