"""The HTTP door: OpenAI's text-to-speech API (`POST /v1/audio/speech`), listings, health, metrics, a web page.

    door = HttpDoor(engine, HttpConfig(port=8080))
    port = await door.start()
    ...
    await door.stop()

Endpoints: `POST /v1/audio/speech` (OpenAI's request; audio streamed per decode window, or SSE events with
`stream_format: "sse"`), `GET /v1/models`, `GET /v1/models/{id}`, `GET /v1/audio/voices` (voices, speakers,
languages, the OpenAI voice-name mapping), `GET /healthz`, `GET /readyz`, `GET /metrics`, and a web page at `/`.
How OpenAI's names map onto vitsrt voices: `vitsrt.serve.http.openai_api`. Needs the `http` extra (FastAPI,
uvicorn); the rest of vitsrt.serve does not import it.
"""

from vitsrt.serve.http.app import HttpConfig, build_app
from vitsrt.serve.http.door import HttpDoor, HttpSetupError

__all__ = ["HttpConfig", "HttpDoor", "HttpSetupError", "build_app"]
