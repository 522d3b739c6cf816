"""The stack gridnode replaces: a ToolExecutor server as the seed's Python SDK describes it
(system-tools-rpc-sdk.txt) — grpcio with a thread pool of 10 workers, tools registered with a
decorator and looked up by name. Serves `echo` and `reverse_text` like gridnode's built-ins.

Usage: python3 grpc_server.py STUBS_DIR — prints "port N" once serving; stops at end of stdin.
"""

import json
import sys
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import rpc_service_pb2  # noqa: E402
import rpc_service_pb2_grpc  # noqa: E402

TOOLS = {}


def register_tool(name):
    def wrap(func):
        TOOLS[name] = func
        return func
    return wrap


@register_tool("echo")
def echo(input_bytes):
    return input_bytes


@register_tool("reverse_text")
def reverse_text(input_bytes):
    data = json.loads(input_bytes.decode())
    return json.dumps({"result": data["text"][::-1]}).encode()


class Executor(rpc_service_pb2_grpc.ToolExecutorServicer):
    def CallFunction(self, request, context):
        tool = TOOLS.get(request.tool_name)
        if tool is None:
            return rpc_service_pb2.CallFunctionResponse(
                success=False, error=f"tool '{request.tool_name}' not found")
        try:
            return rpc_service_pb2.CallFunctionResponse(
                success=True, output=tool(request.input), metadata={"node_id": "python"})
        except Exception as error:  # the seed's SDK answers failures, it does not raise
            return rpc_service_pb2.CallFunctionResponse(success=False, error=str(error))


server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
rpc_service_pb2_grpc.add_ToolExecutorServicer_to_server(Executor(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"port {port}", flush=True)
sys.stdin.read()
server.stop(0)
