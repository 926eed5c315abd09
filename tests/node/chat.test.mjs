import assert from 'node:assert/strict';
import { test } from 'node:test';

import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import { CHAT, client } from './client.mjs';

const openai = client();

test('a streamed answer arrives in chunks and ends with a finish reason and usage', async () => {
  const stream = await openai.chat.completions.create({
    model: CHAT, max_tokens: 12, stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Count from one to five.' }],
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
  }
  assert.ok(chunks > 2 && text.length > 0, text);
  assert.ok(['stop', 'length'].includes(finish));
  assert.ok(usage.completion_tokens > 0 && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);
});

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city.',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

test('tools: the model calls the function, and the answer to it is read back', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const first = await openai.chat.completions.create({
    model: CHAT, messages, tools: [weather], tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const { message, finish_reason: finish } = first.choices[0];
  assert.ok(['tool_calls', 'stop'].includes(finish));
  const call = message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
  const second = await openai.chat.completions.create({
    model: CHAT, max_tokens: 30, tools: [weather],
    messages: [...messages, message, { role: 'tool', tool_call_id: call.id, content: '{"celsius": 21, "sky": "clear"}' }],
  });
  assert.ok(second.choices[0].message.content.length > 0);
});

test('json_schema: the answer is JSON of the schema', async () => {
  const completion = await openai.chat.completions.create({
    model: CHAT, max_tokens: 60,
    messages: [{ role: 'user', content: 'Invent a person: a name and an age.' }],
    response_format: {
      type: 'json_schema',
      json_schema: {
        name: 'person', strict: true,
        schema: {
          type: 'object', additionalProperties: false, required: ['name', 'age'],
          properties: { name: { type: 'string' }, age: { type: 'integer' } },
        },
      },
    },
  });
  const person = JSON.parse(completion.choices[0].message.content);
  assert.equal(typeof person.name, 'string');
  assert.ok(Number.isInteger(person.age));
});

test('chat.completions.parse with zod: a parsed object and parsed tool arguments', async () => {
  const Person = z.object({ name: z.string(), age: z.number().int() });
  const completion = await openai.chat.completions.parse({
    model: CHAT, max_tokens: 60,
    messages: [{ role: 'user', content: 'Invent a person: a name and an age.' }],
    response_format: zodResponseFormat(Person, 'person'),
  });
  const { parsed } = completion.choices[0].message;
  assert.deepEqual(Person.parse(parsed), parsed);

  const City = z.object({ city: z.string() });
  const called = await openai.chat.completions.parse({
    model: CHAT,
    messages: [{ role: 'user', content: 'What is the weather in Rome?' }],
    tools: [zodFunction({ name: 'get_weather', parameters: City, description: 'The weather in a city.' })],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const call = called.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof City.parse(call.function.parsed_arguments).city, 'string');
});
