package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// sysBPF is where systemd (and most tools) mount the bpffs.
const sysBPF = "/sys/fs/bpf"

// isBPFFS reports whether path is on a bpffs.
func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return uint32(st.Type) == unix.BPF_FS_MAGIC, nil
}

// ensureBPFFS makes dir a directory on a bpffs. A dir inside a bpffs is
// created; otherwise a bpffs is mounted: on /sys/fs/bpf itself when dir is
// directly under it (an empty sysfs directory where nothing can be
// created, which systemd normally mounts), else on dir.
func ensureBPFFS(dir string) error {
	ok, err := isBPFFS(dir)
	switch {
	case err == nil && ok:
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("bpffs %s: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	if ok, _ := isBPFFS(parent); ok {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("bpffs: %w", privileged(err))
		}
		return nil
	}
	if parent == sysBPF {
		if err := mountBPFFS(parent); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("bpffs: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	return mountBPFFS(dir)
}

func mountBPFFS(dir string) error {
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mount bpffs on %s: %w (privileges CAP_SYS_ADMIN needed, or mount it: mount -t bpf bpf %s)", dir, err, dir)
		}
		return fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}
	return nil
}

// ownMount reports whether dir is a mount point (its device differs from
// its parent's), i.e. a bpffs that ensureBPFFS mounted on dir itself.
func ownMount(dir string) bool {
	var st, pst unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}
