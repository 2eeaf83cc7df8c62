fn main() {
    println!("encore");
}
