"""The Responses API and Conversations, built on the chat service."""
