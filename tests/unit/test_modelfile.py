"""The Ollama Modelfile's pieces (issue 21, 1): which chat templates are written in Ollama's form, and the default
system prompt a template adds on its own (SmolLM2's), which Ollama would otherwise leave out."""

from __future__ import annotations

from pipeline.model.modelfile import default_system, family

SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
           "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
PLAIN_CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                "'<|im_end|>\n'}}{% endfor %}")
LLAMA3 = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{% endfor %}"


def test_families():
    assert family(SMOLLM2) == "chatml" and family(LLAMA3) == "llama3"
    assert family("{{ messages[0]['content'] }}") is None and family(None) is None


def test_the_default_system_prompt_is_read_from_the_template():
    assert default_system(SMOLLM2, "<|im_end|>") == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert default_system(PLAIN_CHATML, "<|im_end|>") is None
    assert default_system(LLAMA3, "<|eot_id|>") is None
    assert default_system("{% raise %}<|im_start|>", None) is None  # a template that does not render: none
