// The official client, configured from OPENAI_BASE_URL and OPENAI_API_KEY (set by test_node_sdk.py),
// with no retries, so a failure shows on the first try.
import OpenAI from 'openai';

export const CHAT = 'gpt-4o-mini';

export function client(options = {}) {
  return new OpenAI({ maxRetries: 0, timeout: 180_000, ...options });
}

// A client whose requests' JSON bodies are kept in `sent`, to see what the SDK asked for.
export function recordingClient() {
  const sent = [];
  const recording = client({
    fetch: async (url, init) => {
      if (typeof init?.body === 'string') sent.push(JSON.parse(init.body));
      return fetch(url, init);
    },
  });
  return { client: recording, sent };
}

export async function speak(openai, input, voice = 'alloy') {
  const response = await openai.audio.speech.create({ model: 'tts-1', voice, input, response_format: 'wav' });
  return Buffer.from(await response.arrayBuffer());
}
