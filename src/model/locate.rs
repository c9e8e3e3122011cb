//! Where a model named by a relative path is found.
//!
//! Configs and commands name models as `models/default.safetensors`. That resolves
//! from the working directory, which is right for a clone (`scripts/run.sh`) and for
//! the systemd unit (`WorkingDirectory=/usr/share/hark`), but not for someone who
//! installed the package and runs `hark eval ~/recordings` from their home folder. So a
//! relative path that is not there is also looked for where hark's own models live:
//! the installed data folder beside the binary, and the source tree of a cargo build.

use std::path::{Path, PathBuf};

/// The places `path` is looked for, in order: as given (relative to the working
/// directory); then, for a relative path only, `BIN/../share/hark/PATH` (the package
/// layout: `/usr/bin/hark` finds `/usr/share/hark/models/…`) and, for a binary that
/// cargo built (`TREE/target/[TRIPLE/]PROFILE/hark`), `TREE/PATH`. `exe` is the running
/// binary (`None`: only the path as given).
pub fn candidates(path: &Path, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut places = vec![path.to_path_buf()];
    let Some(bin_dir) = exe.and_then(Path::parent) else {
        return places;
    };
    if path.is_absolute() {
        return places;
    }
    if let Some(prefix) = bin_dir.parent() {
        places.push(prefix.join("share/hark").join(path));
    }
    // target/release/hark, target/debug/hark, target/TRIPLE/release/hark
    if let Some(target) = bin_dir
        .ancestors()
        .take(3)
        .find(|a| a.file_name().is_some_and(|n| n == "target"))
    {
        if let Some(tree) = target.parent() {
            places.push(tree.join(path));
        }
    }
    places
}

/// The first of [`candidates`] for the running binary that is a file, or the list of
/// every place looked in when none is.
pub fn locate(path: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    let exe = std::env::current_exe().ok();
    let places = candidates(path, exe.as_deref());
    match places.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(places),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_model_is_also_looked_for_beside_the_binary() {
        let rel = Path::new("models/default.safetensors");
        assert_eq!(
            candidates(rel, Some(Path::new("/usr/bin/hark"))),
            [
                rel.to_path_buf(),
                PathBuf::from("/usr/share/hark/models/default.safetensors"),
            ]
        );
        assert_eq!(
            candidates(rel, Some(Path::new("/src/hark/target/release/hark"))),
            [
                rel.to_path_buf(),
                PathBuf::from("/src/hark/target/share/hark/models/default.safetensors"),
                PathBuf::from("/src/hark/models/default.safetensors"),
            ]
        );
        assert_eq!(
            candidates(
                rel,
                Some(Path::new(
                    "/b/target/aarch64-unknown-linux-gnu/release/hark"
                ))
            )
            .last(),
            Some(&PathBuf::from("/b/models/default.safetensors"))
        );
        // An absolute path means that file only; without a binary, the path as given.
        let abs = Path::new("/etc/hark/m.safetensors");
        assert_eq!(candidates(abs, Some(Path::new("/usr/bin/hark"))), [abs]);
        assert_eq!(candidates(rel, None), [rel]);
    }
}
