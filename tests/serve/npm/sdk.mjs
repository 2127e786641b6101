// Drives `rvec serve` (the tiny test model, served as "tiny") with the
// official OpenAI Node SDK, as an OpenAI-based tool would. Usage:
//   node sdk.mjs http://127.0.0.1:PORT
// Prints one line per check; exits 1 on the first that fails.
import OpenAI from "openai";
import assert from "node:assert/strict";

const client = new OpenAI({ baseURL: process.argv[2] + "/v1", apiKey: "unused", maxRetries: 0 });
const user = (content) => [{ role: "user", content }];

async function refused(promise, errorClass, needle) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error.constructor.name}: ${error.message}`);
    assert.ok(error.message.includes(needle), `"${needle}" not in: ${error.message}`);
    return;
  }
  assert.fail(`expected ${errorClass.name} (${needle}), got an answer`);
}

const checks = {
  async "models.list and models.retrieve"() {
    const list = await client.models.list();
    assert.equal(list.data[0].id, "tiny");
    assert.equal((await client.models.retrieve("tiny")).id, "tiny");
    await refused(client.models.retrieve("gpt-9"), OpenAI.NotFoundError, "does not exist");
  },
  async "developer role is a system message"() {
    const ask = (role) =>
      client.chat.completions.create({
        model: "tiny", max_tokens: 4, temperature: 0,
        messages: [{ role, content: "be brief" }, ...user("hi")],
      });
    const [developer, system] = await Promise.all([ask("developer"), ask("system")]);
    assert.equal(developer.choices[0].message.content, system.choices[0].message.content);
  },
  async "a list of prompts gets one choice per prompt in order"() {
    const listed = await client.completions.create({ model: "tiny", prompt: ["hello", "world"], max_tokens: 3, temperature: 0 });
    assert.deepEqual(listed.choices.map((c) => c.index), [0, 1]);
    const second = await client.completions.create({ model: "tiny", prompt: "world", max_tokens: 3, temperature: 0 });
    assert.equal(listed.choices[1].text, second.choices[0].text);
  },
  async "streaming adds up to the whole answer"() {
    const body = { model: "tiny", messages: user("hi"), max_tokens: 8, temperature: 0 };
    const whole = await client.chat.completions.create(body);
    let text = "";
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    assert.equal(text, whole.choices[0].message.content);
  },
  async "chat logprobs and top_logprobs, whole and streamed"() {
    const body = { model: "tiny", messages: user("hi"), max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 };
    const whole = await client.chat.completions.create(body);
    const content = whole.choices[0].logprobs.content;
    assert.ok(content.length > 0 && content.length <= 5);
    for (const entry of content) {
      assert.equal(typeof entry.token, "string");
      assert.ok(entry.logprob <= 0);
      assert.ok(Array.isArray(entry.bytes));
      assert.equal(entry.top_logprobs.length, 3);
      assert.equal(entry.top_logprobs[0].logprob, entry.logprob);  // greedy: the most likely token
    }
    const streamed = [];
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    }
    assert.deepEqual(streamed, content);
    const plain = await client.chat.completions.create({ ...body, logprobs: false, top_logprobs: undefined });
    assert.equal(plain.choices[0].logprobs, null);
  },
  async "completions echo scores the prompt with max_tokens 0"() {
    const scored = await client.completions.create({ model: "tiny", prompt: "a cat", echo: true, logprobs: 2, max_tokens: 0 });
    const { text, logprobs, finish_reason } = scored.choices[0];
    assert.equal(text, "a cat");
    assert.equal(finish_reason, "length");
    assert.deepEqual(logprobs.tokens, ["a", " ", "c", "a", "t"]);
    assert.deepEqual(logprobs.text_offset, [0, 1, 2, 3, 4]);
    assert.equal(logprobs.token_logprobs[0], null);
    assert.equal(logprobs.top_logprobs[0], null);
    for (let i = 1; i < 5; ++i) {
      assert.ok(logprobs.token_logprobs[i] < 0);
      assert.equal(logprobs.top_logprobs[i][logprobs.tokens[i]], logprobs.token_logprobs[i]);
    }
    assert.equal(scored.usage.completion_tokens, 0);
  },
  async "refused features raise BadRequestError naming the field"() {
    const chat = (extra) => client.chat.completions.create({ model: "tiny", messages: user("hi"), max_tokens: 2, ...extra });
    const tool = { type: "function", function: { name: "f", parameters: { type: "object" } } };
    await refused(chat({ tools: [tool] }), OpenAI.BadRequestError, "tools");
    await refused(chat({ response_format: { type: "json_object" } }), OpenAI.BadRequestError, "response_format");
    await refused(chat({ logit_bias: { 5: 10 } }), OpenAI.BadRequestError, "logit_bias");
    await refused(chat({ presence_penalty: 0.5 }), OpenAI.BadRequestError, "presence_penalty");
    await refused(chat({ logprobs: true, top_logprobs: 21 }), OpenAI.BadRequestError, "top_logprobs");
    await refused(chat({ top_logprobs: 2 }), OpenAI.BadRequestError, "top_logprobs");
    const call = { id: "c1", type: "function", function: { name: "f", arguments: "{}" } };
    await refused(chat({ messages: [...user("hi"), { role: "assistant", content: null, tool_calls: [call] }] }),
                  OpenAI.BadRequestError, "tools (function calling) are not supported");
    await refused(chat({ messages: [...user("hi"), { role: "tool", tool_call_id: "c1", content: "42" }] }),
                  OpenAI.BadRequestError, "tools (function calling) are not supported");
    await refused(client.completions.create({ model: "tiny", prompt: "a", suffix: "b" }), OpenAI.BadRequestError, "suffix");
    await refused(client.completions.create({ model: "tiny", prompt: "a", logprobs: 6 }), OpenAI.BadRequestError, "logprobs");
    await refused(client.completions.create({ model: "tiny", prompt: "a", max_tokens: 0 }), OpenAI.BadRequestError, "max_tokens");
  },
};

for (const [name, check] of Object.entries(checks)) {
  try {
    await check();
    console.log(`ok   ${name}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    process.exit(1);
  }
}
