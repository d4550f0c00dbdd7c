#!/usr/bin/python3
"""A script client doing what ComfyUI's script_examples/websockets_api_example.py does.

Flow: open ws://HOST/ws?clientId=<uuid4>, POST /prompt {"prompt", "client_id"} with urllib
(form content type, as urllib sends by default), wait for the `executing` message whose node is
None for our prompt_id, GET /history/<id>, then GET /view for every image.

Usage: /usr/bin/python3 ws_api_client.py HOST:PORT PROMPT.json OUT_DIR
Prints one JSON line: {"prompt_id", "images": [paths], "types": [ws message types seen]}.
Needs Debian's python3-websocket, so run it with /usr/bin/python3 (not a pyenv python3).
"""
import json
import os
import sys
import urllib.parse
import urllib.request
import uuid

import websocket  # python3-websocket (websocket-client)


def queue_prompt(server, prompt, client_id):
    body = json.dumps({"prompt": prompt, "client_id": client_id}).encode("utf-8")
    req = urllib.request.Request("http://{}/prompt".format(server), data=body)
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def get_json(server, path):
    with urllib.request.urlopen("http://{}{}".format(server, path)) as resp:
        return json.loads(resp.read())


def get_image(server, filename, subfolder, folder_type):
    query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
    with urllib.request.urlopen("http://{}/view?{}".format(server, query)) as resp:
        return resp.read()


def main():
    server, prompt_file, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(prompt_file) as f:
        prompt = json.load(f)
    client_id = str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.settimeout(60)
    ws.connect("ws://{}/ws?clientId={}".format(server, client_id))
    prompt_id = queue_prompt(server, prompt, client_id)["prompt_id"]
    seen = []
    while True:
        frame = ws.recv()
        if not isinstance(frame, str):
            continue  # binary previews
        message = json.loads(frame)
        seen.append(message["type"])
        if message["type"] == "executing":
            data = message["data"]
            if data["node"] is None and data["prompt_id"] == prompt_id:
                break
    ws.close()
    history = get_json(server, "/history/{}".format(prompt_id))[prompt_id]
    paths = []
    for node_id, output in history["outputs"].items():
        for image in output.get("images", []):
            data = get_image(server, image["filename"], image["subfolder"], image["type"])
            path = os.path.join(out_dir, "{}_{}".format(node_id, image["filename"]))
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
    print(json.dumps({"prompt_id": prompt_id, "images": paths, "types": seen, "status": history["status"]["status_str"]}))


if __name__ == "__main__":
    main()
