//go:build linux

package sipproxy

import (
	"encoding/binary"
	"net"
	"syscall"
	"time"
)

// rxOOBSize holds one SO_TIMESTAMPNS control message.
const rxOOBSize = 64

// enableRxTimestamps asks the kernel to stamp each datagram of the socket
// with its arrival time (SO_TIMESTAMPNS), for overload control's queueing
// delay. The kernel turns stamping on in the background: datagrams of the
// first moments may carry their read time instead (a delay of about 0).
func enableRxTimestamps(uc *net.UDPConn) bool {
	if syscall.SizeofCmsghdr != 16 {
		return false // rxTimestamp reads the 64-bit layout only
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// rxTimestamp finds the SO_TIMESTAMPNS stamp in a datagram's control
// messages (parsed in place: no allocation per datagram).
func rxTimestamp(oob []byte) (time.Time, bool) {
	const hdr = syscall.SizeofCmsghdr
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < hdr || l > len(oob) {
			return time.Time{}, false
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SO_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr : hdr+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8 : hdr+16]))
			return time.Unix(sec, nsec), true
		}
		next := (l + 7) &^ 7
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}, false
}
