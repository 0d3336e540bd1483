#![allow(clippy::unwrap_used)]

use super::*;
use i6p_core::Identity;
use std::os::unix::fs::PermissionsExt;

fn peer() -> PeerId {
    Identity::generate().peer_id()
}

/// A fresh directory under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "i6p-book-{name}-{}-{:?}",
        std::process::id(),
        SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn addresses_come_back_most_recent_first_and_undialable_ones_are_dropped() {
    let book = Arc::new(AddressBook::in_memory());
    let p = peer();
    let given = [
        addr("[2001:db8::1]:4433"),
        addr("[::]:4433"),
        addr("[ff02::1]:4433"),
        addr("192.0.2.7:0"),
        addr("[::ffff:192.0.2.7]:9"),
    ];
    assert_eq!(book.add(p, &given), 2);
    book.insert(
        p,
        Seen {
            addr: addr("[2001:db8::2]:1"),
            at: now() + 60,
        },
    );
    assert_eq!(
        book.addrs(&p),
        vec![
            addr("[2001:db8::2]:1"),
            addr("[2001:db8::1]:4433"),
            addr("192.0.2.7:9")
        ]
    );
    assert!(book.addrs(&peer()).is_empty());
    assert!(book.forget(&p) && book.addrs(&p).is_empty() && !book.forget(&p));
}

#[test]
fn the_book_is_bounded_per_peer_and_in_peers() {
    let book = Arc::new(AddressBook::in_memory());
    let p = peer();
    for i in 0..(MAX_ADDRS_PER_PEER as u16 + 10) {
        book.insert(
            p,
            Seen {
                addr: addr(&format!("[2001:db8::1]:{}", i + 1)),
                at: u64::from(i),
            },
        );
    }
    let kept = book.addrs(&p);
    assert_eq!(kept.len(), MAX_ADDRS_PER_PEER);
    assert_eq!(
        kept[0].port(),
        MAX_ADDRS_PER_PEER as u16 + 10,
        "the newest is kept"
    );
    let oldest = peer();
    book.insert(
        oldest,
        Seen {
            addr: addr("[2001:db8::9]:9"),
            at: 0,
        },
    );
    for i in 0..MAX_PEERS {
        book.insert(
            peer(),
            Seen {
                addr: addr("[2001:db8::3]:3"),
                at: 1000 + i as u64,
            },
        );
    }
    assert_eq!(book.len(), MAX_PEERS);
    assert!(
        book.addrs(&oldest).is_empty(),
        "the least recently seen peer went first"
    );
}

#[test]
fn a_saved_book_reads_back_owner_only_and_bad_lines_are_skipped() {
    let dir = scratch("save");
    let path = dir.join("address-book");
    let (p, q) = (peer(), peer());
    let book = Arc::new(AddressBook::open(path.clone()));
    assert!(book.is_empty());
    book.add(p, &[addr("[2001:db8::1]:4433"), addr("192.0.2.1:5")]);
    book.add(q, &[addr("[2001:db8::2]:4433")]);
    book.save_now();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("not a line\nzz [2001:db8::1]:1 5\n");
    text.push_str(&format!(
        "{p} [::]:4433 5\n{p} [2001:db8::5]:5 x\n{p} [2001:db8::6]:6 1 extra\n"
    ));
    std::fs::write(&path, text).unwrap();
    let back = AddressBook::open(path.clone());
    assert_eq!(back.len(), 2);
    let mut got = back.addrs(&p);
    got.sort();
    assert_eq!(got, vec![addr("192.0.2.1:5"), addr("[2001:db8::1]:4433")]);
    assert_eq!(back.addrs(&q), vec![addr("[2001:db8::2]:4433")]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_book_file_too_large_is_not_read_and_is_replaced_at_the_next_save() {
    let dir = scratch("large");
    let path = dir.join("address-book");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_FILE_BYTES + 1).unwrap();
    let book = Arc::new(AddressBook::open(path.clone()));
    assert!(book.is_empty());
    book.add(peer(), &[addr("[2001:db8::1]:1")]);
    book.save_now();
    assert!(std::fs::metadata(&path).unwrap().len() < 1000);
    assert_eq!(AddressBook::open(path).len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}
