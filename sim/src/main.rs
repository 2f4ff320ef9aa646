fn main() {
    eprintln!("mentedb-sim: the campaign runner is not built yet");
    std::process::exit(2);
}
