# Captures the kernel's reply to a one-socket sock_diag request with INET_DIAG_INFO,
# for a loopback connection in a fresh network namespace: the seed of the
# tcp_info_reply fuzz target. Run under `unshare -n`.
import socket, struct, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
client.sendall(b"x" * 1000); server.recv(1000)
local, remote = client.getsockname(), client.getpeername()
def sockid(l, r):
    return (struct.pack("!HH", l[1], r[1]) + socket.inet_aton(l[0]) + b"\0" * 12
            + socket.inet_aton(r[0]) + b"\0" * 12 + struct.pack("=I", 0)
            + struct.pack("=II", 0xffffffff, 0xffffffff))
request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 1 << 1, 0, 1 << 1) + sockid(local, remote)
header = struct.pack("=IHHII", 16 + len(request), 20, 1, 1, 0)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
nl.send(header + request)
reply = nl.recv(65536)
open(sys.argv[1], "wb").write(reply)
# And an error reply: a socket that does not exist.
request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 1 << 1, 0, 1 << 1) + sockid(("127.0.0.1", 1), ("127.0.0.1", 2))
nl.send(struct.pack("=IHHII", 16 + len(request), 20, 1, 2, 0) + request)
open(sys.argv[2], "wb").write(nl.recv(65536))
